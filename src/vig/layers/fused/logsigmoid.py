"""log-decay gates: logsigmoid(x) / normalizer in fp32 from a low-precision x, one kernel each way.

The plain path casts to fp32, takes logsigmoid, divides: three passes with fp32 writes. The
logsigmoid is the op kernels' own (log(1 + u) with a first-order correction for the bits 1 + u drops,
so decays close to 1 keep their relative precision). The models now hand the logits to the op on CUDA
(bigla's gate_logit_normalizer); this kernel serves the log-decay path (VIG_FUSED_OFF=gate_logits, the
A/B baseline).
"""
import torch
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import log_sigmoid
from vig.ops.grid import cdiv

_BLOCK = 1024


@triton.jit
def logsigmoid_fwd_kernel(X, OUT, N, inv_norm, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(OUT + offs, log_sigmoid(x) * inv_norm, mask=mask)


@triton.jit
def logsigmoid_bwd_kernel(X, DOUT, DX, N, inv_norm, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    d = tl.load(DOUT + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(DX + offs, (d * tl.sigmoid(-x) * inv_norm).to(DX.dtype.element_ty), mask=mask)


class _FusedLogSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, normalizer):
        x = x.contiguous()
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        n = x.numel()
        logsigmoid_fwd_kernel[(cdiv(n, _BLOCK),)](x, out, n, 1.0 / normalizer, BLOCK=_BLOCK, num_warps=4)
        ctx.save_for_backward(x)
        ctx.inv_norm = 1.0 / normalizer
        return out

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        dout = dout.contiguous()
        dx = torch.empty_like(x)
        n = x.numel()
        logsigmoid_bwd_kernel[(cdiv(n, _BLOCK),)](x, dout, dx, n, ctx.inv_norm, BLOCK=_BLOCK, num_warps=4)
        return dx, None


def log_gate_fused(x: torch.Tensor, normalizer: float) -> torch.Tensor:
    """logsigmoid(x.float()) / normalizer, fp32 out, gradient in x.dtype."""
    if not normalizer > 0:
        raise ValueError(f"log_gate_fused: gate_logit_normalizer must be > 0, got {normalizer}")
    return _FusedLogSigmoid.apply(x, float(normalizer))
