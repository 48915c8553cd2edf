"""The mixer's 2D gate and its o_proj in one Triton GEMM: y = gate(o, loc, gp) W^T, with, per head of D channels,

    gate = lerp(rmsnorm(loc) * w_l, rmsnorm(o) * w_g, sigmoid(gp)),   silu'd with out_silu (ViG-T's out_act)

The split path writes the gate's output ([M, C], the activation dtype) and cuBLAS reads it back; here each program
walks the C channels one head at a time as the GEMM's K steps (a head's norms need only its own D channels), forms
that head's gate in registers, rounds it to the weight's dtype as the split path does, and feeds it to the dot.
Nothing but y is written. A program covers every output column it can (BN >= N up to MAX_FULL_N), so each gate
value is formed once: a column split would recompute it per column block, and the gate's four SFU ops an element
would then cost more than the traffic saved.
"""
import torch
import triton
import triton.language as tl

from vig.layers.fused import as_rows
from vig.ops.bigla.triton._common import INTERPRET
from vig.ops.grid import cdiv

# (BM, warps, stages) with BN the next power of two >= N up to MAX_FULL_N; wider outputs take BN = WIDE_BN column
# blocks (each recomputing its rows' gate). Chosen on an H100 (benchmarks/bench_gate_linear.py).
MAX_FULL_N = 256
WIDE_BN = 128
FULL_BLOCK = (64, 8, 1)
WIDE_BLOCK = (64, 8, 1)


@triton.jit
def _fwd_kernel(O, L, G, WG, WL, W, Y, M, N, C, D, s_o, s_l, s_g, s_wn, s_ym, eps, OUT_SILU: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, IEEE: tl.constexpr):
    # the column blocks of one row block are adjacent programs, so their reads of its rows meet in L2
    n_blocks = tl.cdiv(N, BN)
    pid = tl.program_id(0)
    rm = (pid // n_blocks) * BM + tl.arange(0, BM)
    rn = (pid % n_blocks) * BN + tl.arange(0, BN)
    rd = tl.arange(0, BD)
    m_ok, n_ok, d_ok = rm < M, rn < N, rd < D
    mask = m_ok[:, None] & d_ok[None, :]
    rows = rm[:, None].to(tl.int64)
    wg = tl.load(WG + rd, mask=d_ok, other=0.0).to(tl.float32)[None, :]
    wl = tl.load(WL + rd, mask=d_ok, other=0.0).to(tl.float32)[None, :]
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for c0 in range(0, C, D):
        cols = (c0 + rd)[None, :]
        o = tl.load(O + rows * s_o + cols, mask=mask, other=0.0).to(tl.float32)
        loc = tl.load(L + rows * s_l + cols, mask=mask, other=0.0).to(tl.float32)
        s = tl.sigmoid(tl.load(G + rows * s_g + cols, mask=mask, other=0.0).to(tl.float32))
        yo = o * (wg / tl.sqrt(tl.sum(o * o, axis=1) / D + eps)[:, None])
        yl = loc * (wl / tl.sqrt(tl.sum(loc * loc, axis=1) / D + eps)[:, None])
        a = yl + s * (yo - yl)
        if OUT_SILU:
            a = a * tl.sigmoid(a)
        w = tl.load(W + rn[:, None] * s_wn + cols, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        if INTERPRET:
            # its half-precision dots multiply the stored bits as integers, and its casts to half truncate: a
            # stays fp32 there (the CPU tests check the math; the CUDA tests check the rounding)
            w = w.to(tl.float32)
        else:
            a = a.to(W.dtype.element_ty)
        if IEEE:
            acc = tl.dot(a, tl.trans(w), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(w), acc)
    tl.store(Y + rows * s_ym + rn[None, :], acc.to(Y.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def launch_blocks(N: int):
    """(BM, BN, warps, stages) of a launch with N output columns."""
    if N <= MAX_FULL_N:
        bm, warps, stages = FULL_BLOCK
        return bm, max(16, triton.next_power_of_2(N)), warps, stages
    bm, warps, stages = WIDE_BLOCK
    return bm, WIDE_BN, warps, stages


def gate_linear_forward(o, loc, gp, wg, wl, w, eps, out_silu):
    """gate(o, loc, gp) w^T: o, loc, gp [..., C] with heads of D = wg.numel() channels, w [N, C] -> [..., N] in w's
    dtype."""
    o2, l2, g2 = as_rows(o), as_rows(loc), as_rows(gp)
    M, C = o2.shape
    N, D = w.shape[0], wg.numel()
    y = torch.empty((M, N), dtype=w.dtype, device=o.device)
    if M:
        bm, bn, warps, stages = launch_blocks(N)
        grid = (cdiv(M, bm) * cdiv(N, bn),)
        # fp32 weights: full-precision dots, as the plain fp32 path computes them (tf32 would miss 1e-5)
        _fwd_kernel[grid](o2, l2, g2, wg, wl, w, y, M, N, C, D, o2.stride(0), l2.stride(0), g2.stride(0),
                          w.stride(0), y.stride(0), eps, OUT_SILU=out_silu, BM=bm, BN=bn,
                          BD=triton.next_power_of_2(D), IEEE=w.dtype == torch.float32, num_warps=warps,
                          num_stages=stages)
    return y.view(*o.shape[:-1], N)
