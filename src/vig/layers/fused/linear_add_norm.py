"""A block's last projection, its residual add and the next RMSNorm as one Triton kernel, for inference:

    s = x + a W^T,    n = s * rsqrt(mean(s^2) + eps) * norm_w        (fp32 accumulators, fp32 statistics)

The plain path runs cuBLAS's GEMM (a read, its output written in bf16), then inductor's add + RMSNorm (that output
and the fp32 stream read, the stream and the norm written). At ViG-T's width one program holds whole output rows,
so the norm runs on the GEMM's accumulators and the GEMM's output never goes to memory: 38 MB less a call at 256
images of 196 tokens, and one launch instead of two (24 a step). The product is added to the stream before it is
rounded, so s is as close to exact as the plain path's, or closer.
"""
import torch
import triton
import triton.language as tl

from vig.layers.fused import as_rows
from vig.ops.bigla.triton._common import INTERPRET, as_stored
from vig.ops.grid import cdiv

# (BM, warps, stages) by the padded row width BN; BK is 64. The accumulator tile is BM x BN fp32.
LAUNCHES = {256: (64, 8, 3), 128: (64, 4, 3), 64: (64, 4, 3), 32: (64, 4, 3), 16: (64, 4, 3)}
BK = 64


@triton.jit
def linear_add_rmsnorm_kernel(A, W, X, NW, XO, NO, M, N, K, s_am, s_wn, s_xm, eps, BM: tl.constexpr,
                              BN: tl.constexpr, BK: tl.constexpr, IEEE: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.arange(0, BN)
    rk = tl.arange(0, BK)
    m_ok, n_ok = rm < M, rn < N
    rows = rm[:, None].to(tl.int64)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, K, BK):
        k_ok = (k0 + rk < K)[None, :]
        a = tl.load(A + rows * s_am + (k0 + rk)[None, :], mask=m_ok[:, None] & k_ok, other=0.0)
        w = tl.load(W + rn[:, None] * s_wn + (k0 + rk)[None, :], mask=n_ok[:, None] & k_ok, other=0.0)
        if INTERPRET:  # the interpreter's half-precision dots multiply the stored bits as integers
            a, w = a.to(tl.float32), w.to(tl.float32)
        if IEEE:
            acc = tl.dot(a, tl.trans(w), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(w), acc)
    mask = m_ok[:, None] & n_ok[None, :]
    s = tl.load(X + rows * s_xm + rn[None, :], mask=mask, other=0.0).to(tl.float32) + acc
    out = rows * N + rn[None, :]
    tl.store(XO + out, as_stored(s, XO), mask=mask)
    s = as_stored(s, XO).to(tl.float32)  # the norm of the stream as stored, as the plain path reads it back
    rstd = 1.0 / tl.sqrt(tl.sum(s * s, axis=1) / N + eps)
    nw = tl.load(NW + rn, mask=n_ok, other=0.0).to(tl.float32)
    tl.store(NO + out, as_stored(s * rstd[:, None] * nw[None, :], NO), mask=mask)


def launch_for(n):
    """(BN, BM, warps, stages) for an output width n (<= linear_add_norm_op.MAX_DIM)."""
    bn = max(16, triton.next_power_of_2(n))
    return (bn, *LAUNCHES[bn])


def linear_add_rms_norm_forward(a, w, x, norm_w, eps):
    """(x + a w^T in x's dtype, its RMSNorm in a's dtype), both shaped like x; checked by the op."""
    a2, x2 = as_rows(a), as_rows(x)
    M, K = a2.shape
    N = w.shape[0]
    xo = torch.empty((M, N), device=x.device, dtype=x.dtype)
    no = torch.empty((M, N), device=x.device, dtype=a.dtype)
    if M:
        bn, bm, warps, stages = launch_for(N)
        linear_add_rmsnorm_kernel[(cdiv(M, bm),)](
            a2, w, x2, norm_w, xo, no, M, N, K, a2.stride(0), w.stride(0), x2.stride(0), eps,
            BM=bm, BN=bn, BK=BK, IEEE=a.dtype == torch.float32, num_warps=warps, num_stages=stages)
    return xo.view(x.shape), no.view(x.shape)
