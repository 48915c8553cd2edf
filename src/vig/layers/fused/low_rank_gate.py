"""The mixer's whole gate projection gk_proj (C -> R -> N with bias, R the 16-wide low rank) for training as two
Triton kernels, one each way, on whole rows of the conv output.

Under cuBLAS a training step runs gk_proj as two forward GEMMs, then dlow, dx and two split-K weight GEMMs with their
reduce kernels, and the bias's column sum. Each streams [tokens, C] rows for a K or an N of 16, one MMA step, so their
tile machinery is mostly overhead (an estimate from the kernel names and counts in session 43's ViG-T table, about
1 ms of its 19.8 ms step; gk_proj's launches were not profiled apart). Here the forward reads a row tile once and
writes the logits; the backward reads the conv output and the logits' gradient once each, recomputes the low-rank
rows, writes dx and leaves each program's weight-gradient sums as fp32 partials that one column sum reduces.

Rounding follows the module path under autocast: x's dtype is the compute dtype, the weights are rounded to it as
they load, the low-rank rows (and their gradient) are rounded to it as the module stores them; the weight and bias
gradients stay fp32 sums until they are returned in the parameters' dtype.
"""
import torch
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import as_stored, dot_acc
from vig.ops.grid import cdiv, next_pow2, sm_count

# A tile's [rows, padded width] elements, its warps, and the persistent programs an SM of each kernel (as many as fit,
# so none waits for a second wave; each backward program leaves a row of partial sums). H100, bf16, 50,176 rows
# (session 45, results/low_rank_gate_h100_session45.json), fwd / fwd + bwd ms at ViG-T's 192 channels: 16,384-value
# tiles (64 rows), 8 warps, one program an SM each way 0.0169 / 0.0706 against the module path's 0.0336 / 0.0960
# (compiled, cuBLAS); 4,096-value tiles on 4 warps, 6 / 2 programs an SM 0.0192 / 0.0864; 4,096 on 8 warps, 3 / 1
# 0.0219 / 0.1376. At ViG-S's 384 every launch was slower than the module path (best 0.0359 / 0.1883 against 0.0555 /
# 0.1580), so low_rank_gate_op.ROUTE_MAX_WIDTH keeps ViG-S on the module path. ptxas (triton 3.6, sm_90a) at this
# launch and ViG-T's width: 49 KB / 164 KB of shared memory forward / backward, no spills; ViG-B's 768 overflowed
# shared memory at any launch (low_rank_gate_op.MAX_WIDTH).
ROW_ELEMENTS = 16384
WARPS = 8
FWD_PROGRAMS_PER_SM = 1
BWD_PROGRAMS_PER_SM = 1


def tile_rows(width_padded: int, itemsize: int) -> int:
    """Rows a tile: ROW_ELEMENTS values of 16-bit inputs, half as many of fp32 ones (at 16,384 fp32 values the
    backward took 295-336 KB of shared memory, over an SM's 227 KB; at 8,192 at most 205 KB: ptxas, sm_90a)."""
    return max(16, ROW_ELEMENTS * 2 // itemsize // width_padded)


@triton.jit
def _load_rows(P, rm, s_m, cols, M, W):
    ok = (rm < M)[:, None] & (cols < W)[None, :]
    return tl.load(P + rm[:, None].to(tl.int64) * s_m + cols[None, :], mask=ok, other=0.0)


@triton.jit
def _weights(W0, W1, X, C, N, R: tl.constexpr, CP: tl.constexpr, NP: tl.constexpr):
    """w0 [R, CP] and w1 [NP, R] rounded to x's dtype (zero past C and N)."""
    rr, rc, rn = tl.arange(0, R), tl.arange(0, CP), tl.arange(0, NP)
    w0 = tl.load(W0 + rr[:, None] * C + rc[None, :], mask=(rc < C)[None, :], other=0.0)
    w1 = tl.load(W1 + rn[:, None] * R + rr[None, :], mask=(rn < N)[:, None], other=0.0)
    return as_stored(w0, X), as_stored(w1, X)


# TILES unspecialised: Triton makes an int argument equal to 1 a constant, and the backward compiled with one tile a
# program (up to 8,448 rows at ViG-T's width on 132 SMs) read shared memory out of bounds on an H100 (triton 3.6,
# session 48, benchmarks/device/low_rank_gate_crash.py); the runtime count is the form timed at 50,176 rows.
@triton.jit(do_not_specialize=["TILES"])
def low_rank_gate_fwd_kernel(X, W0, W1, B, Y, M, C, N, s_xm, TILES, R: tl.constexpr, CP: tl.constexpr,
                             NP: tl.constexpr, BM: tl.constexpr, IEEE: tl.constexpr):
    """Program p writes row tiles p * TILES .. (p + 1) * TILES - 1 (FWD_PROGRAMS_PER_SM programs an SM, each loading
    the weights once, where a program per row tile would read them from L2 once a tile)."""
    pid = tl.program_id(0)
    rn = tl.arange(0, NP)
    w0, w1 = _weights(W0, W1, X, C, N, R, CP, NP)
    bias = tl.load(B + rn, mask=rn < N, other=0.0).to(tl.float32)
    for t in range(TILES):
        rm = (pid * TILES + t) * BM + tl.arange(0, BM)
        x = _load_rows(X, rm, s_xm, tl.arange(0, CP), M, C)
        low = as_stored(dot_acc(x, tl.trans(w0), None, IEEE), X)
        acc = dot_acc(low, tl.trans(w1), None, IEEE) + bias[None, :]
        ok = (rm < M)[:, None] & (rn < N)[None, :]
        tl.store(Y + rm[:, None].to(tl.int64) * N + rn[None, :], as_stored(acc, Y), mask=ok)


@triton.jit(do_not_specialize=["TILES"])
def low_rank_gate_bwd_kernel(X, DY, W0, W1, DX, PART, M, C, N, s_xm, s_dym, TILES, R: tl.constexpr,
                             CP: tl.constexpr, NP: tl.constexpr, BM: tl.constexpr, IEEE: tl.constexpr):
    """Program p walks row tiles p * TILES .. (p + 1) * TILES - 1 and stores its sums of dW0 [R, C], dW1 [N, R] and
    db [N], flattened one after the other, as row p of PART."""
    pid = tl.program_id(0)
    rr, rc, rn = tl.arange(0, R), tl.arange(0, CP), tl.arange(0, NP)
    w0, w1 = _weights(W0, W1, X, C, N, R, CP, NP)
    acc_w0 = tl.zeros((R, CP), dtype=tl.float32)
    acc_w1 = tl.zeros((NP, R), dtype=tl.float32)
    acc_b = tl.zeros((NP,), dtype=tl.float32)
    for t in range(TILES):
        rm = (pid * TILES + t) * BM + tl.arange(0, BM)
        x = _load_rows(X, rm, s_xm, rc, M, C)
        dy = _load_rows(DY, rm, s_dym, rn, M, N)
        low = as_stored(dot_acc(x, tl.trans(w0), None, IEEE), X)
        dlow = as_stored(dot_acc(dy, w1, None, IEEE), X)
        acc_w1 = dot_acc(tl.trans(dy), low, acc_w1, IEEE)
        acc_b += tl.sum(dy.to(tl.float32), axis=0)
        acc_w0 = dot_acc(tl.trans(dlow), x, acc_w0, IEEE)
        dx = dot_acc(dlow, w0, None, IEEE)
        ok = (rm < M)[:, None] & (rc < C)[None, :]
        tl.store(DX + rm[:, None].to(tl.int64) * C + rc[None, :], as_stored(dx, DX), mask=ok)
    row = PART + pid.to(tl.int64) * (R * C + N * R + N)
    tl.store(row + rr[:, None] * C + rc[None, :], acc_w0, mask=(rc < C)[None, :])
    tl.store(row + R * C + rn[:, None] * R + rr[None, :], acc_w1, mask=(rn < N)[:, None])
    tl.store(row + R * C + N * R + rn, acc_b, mask=rn < N)


def _launch(x, w0, w1, programs_per_sm):
    """(C, N, R, padded C, padded N, tile rows, programs, tiles a program): a persistent grid over x's row tiles, at
    least one program (with no rows it stores zero sums)."""
    C, N, R = x.shape[1], w1.shape[0], w0.shape[0]
    CP, NP = next_pow2(C), next_pow2(N)
    bm = tile_rows(max(CP, NP), x.element_size())
    tiles = cdiv(x.shape[0], bm)
    programs = max(1, min(tiles, programs_per_sm * sm_count(x.device)))
    return C, N, R, CP, NP, bm, programs, cdiv(tiles, programs)


def low_rank_gate_forward(x, w0, w1, bias):
    """x [M, C] (any row stride) -> x w0^T w1^T + bias [M, N], contiguous, in x's dtype."""
    M = x.shape[0]
    C, N, R, CP, NP, bm, programs, per_program = _launch(x, w0, w1, FWD_PROGRAMS_PER_SM)
    y = torch.empty((M, N), device=x.device, dtype=x.dtype)
    if M:
        low_rank_gate_fwd_kernel[(programs,)](x, w0, w1, bias, y, M, C, N, x.stride(0), per_program, R=R, CP=CP,
                                              NP=NP, BM=bm, IEEE=x.dtype == torch.float32, num_warps=WARPS)
    return y


def low_rank_gate_backward(dy, x, w0, w1):
    """(dx [M, C] in x's dtype, the fp32 sums of dW0 [R, C], dW1 [N, R] and db [N] flattened into one vector): the
    programs' partial sums are reduced here, so the op's output shapes do not depend on its grid."""
    M = x.shape[0]
    C, N, R, CP, NP, bm, programs, per_program = _launch(x, w0, w1, BWD_PROGRAMS_PER_SM)
    dx = torch.empty((M, C), device=x.device, dtype=x.dtype)
    part = torch.empty((programs, R * C + N * R + N), device=x.device, dtype=torch.float32)
    low_rank_gate_bwd_kernel[(programs,)](
        x, dy, w0, w1, dx, part, M, C, N, x.stride(0), dy.stride(0), per_program, R=R, CP=CP, NP=NP, BM=bm,
        IEEE=x.dtype == torch.float32, num_warps=WARPS)
    return dx, part.sum(0)
