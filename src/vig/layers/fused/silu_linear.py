"""y = silu(x) W^T as one persistent, warp-specialized TMA kernel (sm_90, bf16 / fp16): the SiLU is taken on each x
tile as it is read, so the activation of ViG-T's depthwise conv (use_act_in_conv) needs no pass of its own before the
merged inference projection (bigla_attn.merged_projections). The gate kernel takes the same SiLU on its local branch
(gate.py's loc_silu), the pass's other consumer.

Why: that pass is 0.168 ms of ViG-T's 4.92 ms inference step (12 calls; H100, session 38's kernel table), where ViG-T
infers at 0.981x DeiT-T (session 42). Opt-in (VIG_FUSED_ON=silu_prologue) until a device call times it in a model;
benchmarks/probe_silu_linear.py sweeps the launches against the SiLU pass + cuBLAS.
"""
import torch
import triton
import triton.language as tl

from vig.layers.fused import linear_swiglu_tma
from vig.ops.bigla.triton._common import INTERPRET, dot_acc
from vig.ops.grid import cdiv, sm_count

# (BM, BN, BK, warps, stages, warp-specialized); untimed in a model: the probe's sweep picks it
LAUNCH = (128, 128, 64, 4, 3, True)
INTERPRETER_LAUNCH = (32, 32, 16, 4, 2, True)  # CPU tests: small tiles, so that rows, columns and K leave partial ones


@triton.jit
def silu_linear_kernel(x_desc, w_desc, y_desc, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       PROGRAMS: tl.constexpr, WS: tl.constexpr):
    """The SiLU in fp32 on each x tile, rounded to x's dtype before the dot, as the separate pass stores it. The
    column tiles of one row tile are adjacent tiles, so their x rows meet in L2."""
    n_n = tl.cdiv(N, BN)
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BM) * n_n, PROGRAMS, flatten=True, warp_specialize=WS):
        pm = tile // n_n
        pn = tile % n_n
        acc = tl.zeros([BM, BN], tl.float32)
        for k0 in range(0, K, BK):
            x = x_desc.load([pm * BM, k0]).to(tl.float32)
            x = (x * tl.sigmoid(x)).to(x_desc.dtype)
            acc = dot_acc(x, w_desc.load([pn * BN, k0]).T, acc, False)
        y_desc.store([pm * BM, pn * BN], acc.to(y_desc.dtype))


def tma_usable(x2, w) -> bool:
    """Whether the kernel can describe row-major x2 [M, K] and w [N, K]: linear_swiglu_tma's conditions (sm_90 or the
    interpreter, half dtypes, a capable triton, 16-byte rows and bases) for x2, w and the output's rows."""
    return (x2.shape[0] > 0 and w.dtype == x2.dtype and (w.shape[0] * w.element_size()) % 16 == 0
            and linear_swiglu_tma.usable(x2, w))


def silu_linear_tma(x2, w, launch=None):
    """silu(x2) @ w.T on the TMA kernel (tma_usable must hold)."""
    from triton.tools.tensor_descriptor import TensorDescriptor
    bm, bn, bk, warps, stages, ws = launch or (INTERPRETER_LAUNCH if INTERPRET else LAUNCH)
    M, K = x2.shape
    N = w.shape[0]
    y = torch.empty(M, N, device=x2.device, dtype=x2.dtype)
    programs = max(1, min(sm_count(x2.device), cdiv(M, bm) * cdiv(N, bn)))
    descs = [TensorDescriptor.from_tensor(t, block) for t, block in ((x2, [bm, bk]), (w, [bn, bk]), (y, [bm, bn]))]
    silu_linear_kernel[(programs,)](*descs, M, N, K, BM=bm, BN=bn, BK=bk, PROGRAMS=programs, WS=ws,
                                    num_warps=warps, num_stages=stages)
    return y


def silu_linear_forward(x, w):
    """silu(x) @ w.T, x [..., K], w [N, K] -> [..., N] in x's dtype; where the kernel cannot run, the SiLU pass and
    a matmul (the path it replaces)."""
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) == 1 and tma_usable(x2, w):
        y = silu_linear_tma(x2, w)
    else:
        y = torch.nn.functional.silu(x2) @ w.t()
    return y.view(*x.shape[:-1], w.shape[0])
