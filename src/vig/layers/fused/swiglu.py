"""silu(a) * b over the two halves of one projection, one Triton kernel each way.

The input h is viewed as [outer, 2, inner] (a = h[:, 0], b = h[:, 1]): that covers the
channel-last MLP (outer = tokens, inner = hidden) and the contiguous NCHW gMlp (outer = batch,
inner = hidden * h * w). Math in fp32, rounded once to the input dtype; the backward writes
the gradient of h in one tensor, so no torch.cat of the two halves.
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv

from vig.layers.fused.swiglu_op import check_swiglu_args

_BLOCK = 1024


@triton.jit
def swiglu_fwd_kernel(H, OUT, N, INNER, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    ia = (offs // INNER) * (2 * INNER) + offs % INNER
    a = tl.load(H + ia, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(H + ia + INNER, mask=mask, other=0.0).to(tl.float32)
    y = a * tl.sigmoid(a) * b
    tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def swiglu_bwd_kernel(H, DOUT, DH, N, INNER, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    ia = (offs // INNER) * (2 * INNER) + offs % INNER
    a = tl.load(H + ia, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(H + ia + INNER, mask=mask, other=0.0).to(tl.float32)
    d = tl.load(DOUT + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(a)
    tl.store(DH + ia, (d * b * s * (1.0 + a * (1.0 - s))).to(DH.dtype.element_ty), mask=mask)
    tl.store(DH + ia + INNER, (d * a * s).to(DH.dtype.element_ty), mask=mask)


def _inner(shape, dim):
    """Elements of one half-row: the half of `dim` times every dim after it."""
    inner = shape[dim] // 2
    for s in shape[dim + 1:]:
        inner *= s
    return inner


def swiglu_forward(h: torch.Tensor, dim: int) -> torch.Tensor:
    """silu(a) * b for a contiguous h (dim >= 0, of even size)."""
    shape = list(h.shape)
    inner = _inner(shape, dim)
    shape[dim] //= 2
    out = torch.empty(shape, dtype=h.dtype, device=h.device)
    n = out.numel()
    swiglu_fwd_kernel[(cdiv(n, _BLOCK),)](h, out, n, inner, BLOCK=_BLOCK, num_warps=4)
    return out


def swiglu_backward(h: torch.Tensor, dout: torch.Tensor, dim: int) -> torch.Tensor:
    """The gradient of h (contiguous, like h) given dout, the gradient of swiglu_forward(h, dim)."""
    dout = dout.contiguous()
    dh = torch.empty_like(h, memory_format=torch.contiguous_format)
    n = dout.numel()
    swiglu_bwd_kernel[(cdiv(n, _BLOCK),)](h, dout, dh, n, _inner(h.shape, dim), BLOCK=_BLOCK, num_warps=4)
    return dh


class _FusedSwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, dim):
        ctx.save_for_backward(h)
        ctx.dim = dim
        return swiglu_forward(h, dim)

    @staticmethod
    def backward(ctx, dout):
        (h,) = ctx.saved_tensors
        return swiglu_backward(h, dout, ctx.dim), None


def swiglu_fused(h: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """silu(a) * b with [a | b] = h split in two along dim; h must be contiguous."""
    return _FusedSwiGLU.apply(h, check_swiglu_args(h, dim))
