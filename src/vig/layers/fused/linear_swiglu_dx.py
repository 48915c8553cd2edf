"""linear_swiglu's backward with dx formed in the dh kernel (opt-in, VIG_LINEAR_SWIGLU_BWD=rows; untimed).

The default backward writes dh = [dh_a | dh_b] ([M, 2N], the widest tensor of the MLP) and cuBLAS then reads it
twice: dx = dh W and dw = dh^T x. Here one program a row block walks every column block (K <= SMALL_K, so its dx
rows fit in registers: [32, 256] fp32 at ViG-T's K = 192, padded to a power of two): each block's dh, as stored, is
also multiplied by its W rows into the program's dx accumulator, and dx is stored once at the end. dh is still
written for dw. Saves cuBLAS's dx GEMM and its read of dh (103 MB a block at ViG-T, ~0.4 ms of a 20 ms training
step by NOTES session 33's estimate).
"""
import torch
import triton
import triton.language as tl

from vig.layers.fused import as_rows
from vig.layers.fused.linear_swiglu import dh_block, linear_swiglu_dh
from vig.layers.fused.linear_swiglu_op import bwd_walks_rows
from vig.ops.bigla.triton._common import INTERPRET, as_stored
from vig.ops.grid import cdiv, next_pow2

# (BM, BN, BK, warps, stages). ptxas (triton 3.8, sm_90a) at K = 192, bf16: 32 x 64 x 32 on 8 warps 128 registers,
# no spills (2 programs an SM; BK 64 spills); 64-row blocks 236-250 (1 an SM). Untimed (bench_linear_swiglu.py)
ROWS_BWD_BLOCK = (32, 64, 32, 8, 3)


@triton.jit
def linear_swiglu_dh_dx_kernel(X, W, DY, DH, DX, M, N, K, s_xm, s_wn, s_dym, s_dhm, s_dxm, BM: tl.constexpr,
                               BN: tl.constexpr, BK: tl.constexpr, KP: tl.constexpr, IEEE: tl.constexpr):
    pid_m = tl.program_id(0)
    rk = tl.arange(0, KP)
    k_ok = (rk < K)[None, :]
    dx = tl.zeros([BM, KP], dtype=tl.float32)
    for pid_n in range(0, tl.cdiv(N, BN)):
        dh_a, dh_b, rm, rn = dh_block(X, W, DY, DH, M, N, K, s_xm, s_wn, s_dym, s_dhm, pid_m, pid_n, BM, BN, BK, IEEE)
        n_ok = (rn < N)[:, None]
        wa = tl.load(W + rn[:, None] * s_wn + rk[None, :], mask=n_ok & k_ok, other=0.0)
        wb = tl.load(W + (rn + N)[:, None] * s_wn + rk[None, :], mask=n_ok & k_ok, other=0.0)
        if INTERPRET:  # the interpreter's half-precision dots multiply the stored bits as integers
            dh_a, dh_b, wa, wb = dh_a.to(tl.float32), dh_b.to(tl.float32), wa.to(tl.float32), wb.to(tl.float32)
        if IEEE:
            dx = tl.dot(dh_a, wa, dx, input_precision="ieee")
            dx = tl.dot(dh_b, wb, dx, input_precision="ieee")
        else:
            dx = tl.dot(dh_a, wa, dx)
            dx = tl.dot(dh_b, wb, dx)
    rm = pid_m * BM + tl.arange(0, BM)
    tl.store(DX + rm[:, None].to(tl.int64) * s_dxm + rk[None, :], as_stored(dx, DX), mask=(rm < M)[:, None] & k_ok)


def linear_swiglu_dh_dx(x, w, dy):
    """(dh, dx) of linear_swiglu_forward's output gradient dy: dh = d(x W^T) [..., 2N], dx = dh W [..., K], both in
    x's dtype."""
    x2, dy2 = as_rows(x), as_rows(dy)
    M, K = x2.shape
    if not bwd_walks_rows(K):
        dh = linear_swiglu_dh(x, w, dy)
        return dh, (dh.reshape(M, -1) @ w).view(x.shape)
    N = w.shape[0] // 2
    bm, bn, bk, warps, stages = ROWS_BWD_BLOCK
    dh = torch.empty((M, 2 * N), dtype=x.dtype, device=x.device)
    dx = torch.empty((M, K), dtype=x.dtype, device=x.device)
    if M:
        linear_swiglu_dh_dx_kernel[(cdiv(M, bm),)](
            x2, w, dy2, dh, dx, M, N, K, x2.stride(0), w.stride(0), dy2.stride(0), dh.stride(0), dx.stride(0),
            BM=bm, BN=bn, BK=bk, KP=next_pow2(K), IEEE=x2.dtype == torch.float32, num_warps=warps,
            num_stages=stages)
    return dh.view(*x.shape[:-1], 2 * N), dx.view(x.shape)
