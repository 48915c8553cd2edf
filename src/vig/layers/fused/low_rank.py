"""The gate projection's second layer at inference as one Triton kernel: out = low W^T + bias, with K the 16-wide low
rank (gk_proj[1], reading its input slice of the merged projections' output in place).

cuBLAS runs this [tokens, 16] x [16, 2 key_dim] GEMM at ~1.2 TB/s (16 us a block at ViG-T on an H100, session 37's
kernel table: 0.193 of 5.05 ms) for a store-bound 19 MB: a K of 16 is one MMA step, so its tile machinery is overhead.
Here a program loads its [BM, 16] rows once, and one dot and the bias give each [BM, BN] block of the output.
"""
import torch
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import as_stored, dot_acc
from vig.ops.grid import cdiv

# (BM, BN, warps). H100, bf16, 50,176 rows (session 38, results/low_rank_h100_session38.json): 0.0096 ms at ViG-T's
# 192 outputs against addmm's 0.0186; 64 x 64 x 4 within 1.5% of it at ViG-T / S / B, 128-wide N or 8 warps 7-25%
# slower.
LAUNCH = (128, 64, 4)


@triton.jit
def low_rank_linear_kernel(A, W, B, Y, M, N, s_am, s_wn, R: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                           IEEE: tl.constexpr):
    # the column blocks of one row block are adjacent programs, so their reads of its rows meet in L2
    n_blocks = tl.cdiv(N, BN)
    pid = tl.program_id(0)
    rm = (pid // n_blocks) * BM + tl.arange(0, BM)
    rn = (pid % n_blocks) * BN + tl.arange(0, BN)
    rr = tl.arange(0, R)
    m_ok, n_ok = rm < M, rn < N
    rows = rm[:, None].to(tl.int64)
    a = tl.load(A + rows * s_am + rr[None, :], mask=m_ok[:, None], other=0.0)
    w = tl.load(W + rn[:, None] * s_wn + rr[None, :], mask=n_ok[:, None], other=0.0)
    acc = dot_acc(a, tl.trans(w), None, IEEE)
    acc += tl.load(B + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + rows * N + rn[None, :], as_stored(acc, Y), mask=m_ok[:, None] & n_ok[None, :])


def low_rank_linear_forward(a, w, bias):
    """a [M, R] (rows of any stride, unit column stride) @ w^T + bias -> [M, N] contiguous in a's dtype."""
    M, R = a.shape
    N = w.shape[0]
    y = torch.empty((M, N), device=a.device, dtype=a.dtype)
    if M:
        bm, bn, warps = LAUNCH
        low_rank_linear_kernel[(cdiv(M, bm) * cdiv(N, bn),)](
            a, w, bias, y, M, N, a.stride(0), w.stride(0), R=R, BM=bm, BN=bn, IEEE=a.dtype == torch.float32,
            num_warps=warps)
    return y
