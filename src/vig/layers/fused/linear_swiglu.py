"""The MLP's first projection and its SwiGLU in one Triton GEMM each way: y = silu(x Wa^T) * (x Wb^T).

W = [Wa; Wb] is gate_proj's weight [2N, K]. The plain path writes h = x W^T ([M, 2N], twice y's bytes), reads
it back for the SwiGLU and keeps it for the backward; at ViG's shapes (K = dim, N = 8/3 dim) those passes over h
cost more than the GEMM's arithmetic. Here each program computes one [BM, BN] block of both halves in fp32
accumulators and stores only y. The backward recomputes the two blocks (K is small: one more GEMM of the forward's
size) and writes dh = [dh_a | dh_b] straight from its epilogue, so h is never stored or saved.
"""
import os

import torch
import triton
import triton.language as tl

from vig.layers.fused import LINEAR_SWIGLU_TMA, as_rows, linear_swiglu_tma
from vig.ops.bigla.triton._common import dot_acc
from vig.ops.grid import cdiv

# (BM, BN, BK, warps, stages) for K <= SMALL_K and for larger K. H100, bf16, 50,176 rows (256 images of 196 tokens),
# GPU ms (benchmarks/results/linear_swiglu_h100_session33.json): ViG-T's MLP (K 192, N 512) forward 0.070 on
# 64 x 64 x 64 blocks in 2 stages against 0.106 split (cuBLAS + our SwiGLU), its dh kernel fastest on 64 x 64 x 32 in
# 4 stages (fwd + bwd 0.267 against 0.296); ViG-S / B (K 384 / 768) forward 0.185 / 0.585 on 128 x 64 x 64 (4 warps,
# 255 registers, no spills) against 0.239 / 0.632 split. The dh kernel at larger K recomputes a GEMM that is no
# longer memory-bound (ViG-B fwd + bwd 2.09-2.25 ms against 1.77 split), so the models train those sizes on the
# split path (mlp.py); its block there is the one that does not spill (ptxas, sm_90a).
# Two other forms were tried and removed in session 37 (H100, bf16, M = 50,176, K = 192, N = 512: ViG-T's MLP;
# benchmarks/results/linear_swiglu_h100_session37_rows.json): a forward with one program a row block walking every
# column block, x and W read once a program instead of through L2 per block (best 0.0737 ms against the block grid's
# 0.0706; ViG-T inference 46,477 against 48,571 img/s, bs 256), and a backward forming dx = dh W inside the dh kernel
# in place of cuBLAS's dx GEMM (fwd + bwd 0.446 ms against 0.266). Session 38 removed a third (written in session 37):
# both kernels as persistent grids, 2-4 programs an SM walking the tiles in a tl.range(flatten=True) loop so the next
# tile's loads overlap this one's dots (linear_swiglu_h100_session38_persistent.json): forward 0.072-0.173 ms across
# six launches against the block grid's 0.071, fwd + bwd 0.324-0.483 against 0.265; ViG-T inference 43,903 against
# 49,834 img/s and training 12,020 against 12,857 (bs 256, CUDA graphs). Session 39 removed a fourth (written in
# session 38): both kernels with their loads and stores through TMA tensor descriptors
# (linear_swiglu_h100_session39_tma.json): forward 0.069-0.098 ms across seven launches against the block grid's
# 0.071, fwd + bwd 0.267 at best against 0.268; ViG-T inference 49,430 against 50,201 img/s, training 12,697
# against 12,761. Session 41 removed a fifth: one [BM, 2 BN] dot a K step over W rows interleaved a, b, its column
# pairs split in registers (linear_swiglu_h100_session41_one_dot.json): ViG-B's forward 0.574 ms at 128 x 128 x 64
# (8 warps, 3 stages) against 0.584, ViG-S / T no faster (0.184 / 0.070 at best); ViG-B inference 9,630 against
# 9,512 img/s, ViG-S 24,268 against 24,573 (each in its own process): within the runs' spread.
SMALL_K = 256


def blocks_knob(name: str, table: tuple) -> tuple:
    """table, or the blocks asked for by the variable `name` (A/B runs in separate processes): one block for both K
    classes or two joined by "/", each BMxBNxBKxWARPSxSTAGES."""
    knob = os.environ.get(name)
    if not knob:
        return table
    try:
        blocks = tuple(tuple(int(v) for v in part.split("x")) for part in knob.split("/"))
        if len(blocks) not in (1, 2) or any(len(b) != 5 for b in blocks):
            raise ValueError
    except ValueError:
        raise ValueError(f"{name} must be BMxBNxBKxWARPSxSTAGES, one or two joined by '/', got {knob!r}") from None
    return blocks * 2 if len(blocks) == 1 else blocks


FWD_BLOCKS = blocks_knob("VIG_LINEAR_SWIGLU_FWD", ((64, 64, 64, 4, 2), (128, 64, 64, 4, 3)))
BWD_BLOCKS = blocks_knob("VIG_LINEAR_SWIGLU_DH", ((64, 64, 32, 4, 4), (128, 64, 64, 8, 3)))
TMA = LINEAR_SWIGLU_TMA  # where they can run, the TMA kernels (linear_swiglu_tma.py); numbers in fused/__init__.py


@triton.jit
def _both_halves(X, W, M, N, K, s_xm, s_wn, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, IEEE: tl.constexpr):
    """fp32 blocks of x Wa^T and x Wb^T of this program's tile: rows pid_m * BM.., columns pid_n * BN.. of the N per
    half. The column blocks of one row block are adjacent programs, so their reads of its x rows meet in L2."""
    n_blocks = tl.cdiv(N, BN)
    pid = tl.program_id(0)
    pid_m, pid_n = pid // n_blocks, pid % n_blocks
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc_a = tl.zeros([BM, BN], dtype=tl.float32)
    acc_b = tl.zeros([BM, BN], dtype=tl.float32)
    m_ok = (rm < M)[:, None]
    n_ok = (rn < N)[:, None]
    x_rows = X + rm[:, None].to(tl.int64) * s_xm
    for k0 in range(0, K, BK):
        k_ok = (k0 + rk < K)[None, :]
        x = tl.load(x_rows + (k0 + rk)[None, :], mask=m_ok & k_ok, other=0.0)
        wa = tl.load(W + rn[:, None] * s_wn + (k0 + rk)[None, :], mask=n_ok & k_ok, other=0.0)
        wb = tl.load(W + (rn + N)[:, None] * s_wn + (k0 + rk)[None, :], mask=n_ok & k_ok, other=0.0)
        acc_a = dot_acc(x, tl.trans(wa), acc_a, IEEE)
        acc_b = dot_acc(x, tl.trans(wb), acc_b, IEEE)
    return acc_a, acc_b, rm, rn


@triton.jit
def linear_swiglu_fwd_kernel(X, W, Y, M, N, K, s_xm, s_wn, s_ym, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                             IEEE: tl.constexpr):
    a, b, rm, rn = _both_halves(X, W, M, N, K, s_xm, s_wn, BM, BN, BK, IEEE)
    y = a * tl.sigmoid(a) * b
    tl.store(Y + rm[:, None].to(tl.int64) * s_ym + rn[None, :], y.to(Y.dtype.element_ty),
             mask=(rm < M)[:, None] & (rn < N)[None, :])


@triton.jit
def linear_swiglu_dh_kernel(X, W, DY, DH, M, N, K, s_xm, s_wn, s_dym, s_dhm, BM: tl.constexpr, BN: tl.constexpr,
                            BK: tl.constexpr, IEEE: tl.constexpr):
    a, b, rm, rn = _both_halves(X, W, M, N, K, s_xm, s_wn, BM, BN, BK, IEEE)
    mask = (rm < M)[:, None] & (rn < N)[None, :]
    rows = rm[:, None].to(tl.int64)
    d = tl.load(DY + rows * s_dym + rn[None, :], mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(a)
    dst = DH + rows * s_dhm + rn[None, :]
    tl.store(dst, (d * b * s * (1.0 + a * (1.0 - s))).to(DH.dtype.element_ty), mask=mask)
    tl.store(dst + N, (d * a * s).to(DH.dtype.element_ty), mask=mask)


def _launch(kernel, table, x2, w, tensors):
    """kernel over x2's rows with its other row-major tensors, on table's block for x2's K."""
    M, K = x2.shape
    N = w.shape[0] // 2
    bm, bn, bk, warps, stages = table[0] if K <= SMALL_K else table[1]
    if M:
        # fp32 operands: full-precision dots, as the plain fp32 path computes them (tf32 would miss 1e-5)
        kernel[(cdiv(M, bm) * cdiv(N, bn),)](
            x2, w, *tensors, M, N, K, x2.stride(0), w.stride(0), *(t.stride(0) for t in tensors),
            BM=bm, BN=bn, BK=bk, IEEE=x2.dtype == torch.float32, num_warps=warps, num_stages=stages)


def _tma(x2, w, *others):
    """Whether this call takes the TMA kernels: asked for, rows present, and operands they can describe. W is read
    through its interleaved copy, whose rows (K values) and each half of y / dh (N) must be 16-byte multiples."""
    return (TMA and x2.shape[0] > 0 and w.dtype == x2.dtype and (w.shape[1] * w.element_size()) % 16 == 0
            and (w.shape[0] // 2 * w.element_size()) % 16 == 0 and linear_swiglu_tma.usable(x2, *others))


def linear_swiglu_forward(x, w):
    """silu(x Wa^T) * (x Wb^T) with [Wa; Wb] = w ([2N, K]); x [..., K] -> [..., N] in x's dtype."""
    x2 = as_rows(x)
    if _tma(x2, w):
        y = linear_swiglu_tma.forward(x2, w)
    else:
        y = torch.empty((x2.shape[0], w.shape[0] // 2), dtype=x.dtype, device=x.device)
        _launch(linear_swiglu_fwd_kernel, FWD_BLOCKS, x2, w, (y,))
    return y.view(*x.shape[:-1], y.shape[1])


def linear_swiglu_dh(x, w, dy):
    """The gradient of h = x W^T ([..., 2N], x's dtype) given dy, the gradient of linear_swiglu_forward's output."""
    x2, dy2 = as_rows(x), as_rows(dy)
    if _tma(x2, w, dy2):
        dh = linear_swiglu_tma.dh(x2, w, dy2)
    else:
        dh = torch.empty((x2.shape[0], w.shape[0]), dtype=x.dtype, device=x.device)
        _launch(linear_swiglu_dh_kernel, BWD_BLOCKS, x2, w, (dy2, dh))
    return dh.view(*x.shape[:-1], dh.shape[1])
