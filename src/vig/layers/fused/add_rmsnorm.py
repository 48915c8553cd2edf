"""Residual add + RMSNorm over the last dim as one Triton kernel each way:

    s = x + y,    n = rmsnorm(s) * w                              (fp32 math, fp32 statistics)

Eager, the plain path writes s, reads it back for the norm's ~7 elementwise kernels and, in the
backward, adds the residual grad to the norm's input grad in one more kernel. Here x and y are
read once and s, n written once; the backward reads s, dn, ds once and writes the grad of x and,
when y has another dtype (a bf16 branch on an fp32 stream under autocast), y's grad from the
same fp32 values. Inductor fuses the plain path into one kernel each way too, but then casts the
stream's grad to bf16 in a second pass and sums 1,568 rows of weight-grad partials per norm in
ATen (ViG-T's compiled training step, H200: 0.31 + 0.48 ms of 18.5; benchmarks/NOTES_bigla.md,
session 20); this backward writes both grads in its pass and a few hundred partial rows.
The norm uses the fp32 sum before it is rounded to s's dtype, so a bf16 stream loses no more
than the plain path.
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv, sm_count

from vig.layers.fused.rmsnorm import _blocks

_TILE = 4096
# the backward's row tile and programs per SM; module attributes, so benchmarks/bench_fused_layers.py can try others.
# Measured with session 40's kernels (H100, bf16, 50,176 rows, GPU ms; results/fused_layers_h100_session40_*.json):
# at ViG-T's D 192, 4,096 values x 2 programs an SM 0.0668 (inductor's 0.0687), 2,048 x 4 0.0765, 2,048 x 8 0.0743;
# at ViG-B's D 768, 0.2219 / 0.2216 / 0.2192 (inductor 0.2352). A 4,096-value tile takes 255 registers on 4 warps
# (ptxas, triton 3.6, sm_90a, no spills), so 2 programs fit an SM
BWD_TILE, BWD_PROGRAMS_PER_SM = 4096, 2


@triton.jit
def add_rmsnorm_fwd_kernel(X, Y, W, S, N, RSTD, M, D, s_x, s_y, s_s, s_n, eps,
                           BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.max_contiguous(tl.arange(0, BLOCK_D), 4)  # the backward says why
    rmask, cmask = rows < M, cols < D
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(X + rows[:, None] * s_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = tl.load(Y + rows[:, None] * s_y + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    s = x + y
    rstd = 1.0 / tl.sqrt(tl.sum(s * s, axis=1) / D + eps)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    n = s * rstd[:, None] * w[None, :]
    tl.store(S + rows[:, None] * s_s + cols[None, :], s.to(S.dtype.element_ty), mask=mask)
    tl.store(N + rows[:, None] * s_n + cols[None, :], n.to(N.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=rmask)


@triton.jit
def add_rmsnorm_bwd_kernel(S, W, DN, DS, DX, DY, RSTD, DW_PART, M, D, s_s, s_dn, s_ds, s_dx, s_dy,
                           HAS_DY: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    # a persistent grid: each program walks row blocks pid, pid + programs, ... and keeps its weight-grad
    # products in [BLOCK_M, BLOCK_D] registers, summed over rows once at the end, as the gate backward's persistent
    # grid does (a sum per block is a cross-warp reduction through shared memory, barriers included, every
    # iteration), so the partials are a few hundred rows and their sum is one short launch
    pid = tl.program_id(0)
    # 4-wide column groups: the fp32 tiles' widest vectors. Left to itself triton lays the tiles out 8 wide for the
    # bf16 dn and then converts the fp32 dx tile to a 4-wide layout through shared memory every iteration (4 of
    # the loop's 7 barriers; ptxas, triton 3.6, sm_90a, ViG-T's 8 x 256 tile); this way no tile changes layout
    cols = tl.max_contiguous(tl.arange(0, BLOCK_D), 4)
    cmask = cols < D
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for blk in range(pid, tl.cdiv(M, BLOCK_M), tl.num_programs(0)):
        rows = (blk * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        s = tl.load(S + rows[:, None] * s_s + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dn = tl.load(DN + rows[:, None] * s_dn + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        shat = s * rstd[:, None]
        a = dn * w[None, :]
        # rmsnorm backward rstd * (g - s_hat * mean(g * s_hat)), g = dn * w, plus the residual grad
        d = (a - shat * (tl.sum(a * shat, axis=1) / D)[:, None]) * rstd[:, None]
        d += tl.load(DS + rows[:, None] * s_ds + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + rows[:, None] * s_dx + cols[None, :], d.to(DX.dtype.element_ty), mask=mask)
        if HAS_DY:  # the branch's grad in its own dtype, from the fp32 sum: no second pass to cast it
            tl.store(DY + rows[:, None] * s_dy + cols[None, :], d.to(DY.dtype.element_ty), mask=mask)
        dw += dn * shat
    tl.store(DW_PART + pid * D + cols, tl.sum(dw, axis=0), mask=cmask)


def add_rms_norm_forward(x, y, weight, eps, n_dtype):
    """x, y [M, D] with unit column stride -> (s = x + y in their promoted dtype, n in n_dtype, rstd fp32 [M])."""
    M, D = x.shape
    s = torch.empty((M, D), dtype=torch.promote_types(x.dtype, y.dtype), device=x.device)
    n = torch.empty((M, D), dtype=n_dtype, device=x.device)
    rstd = torch.empty(M, dtype=torch.float32, device=x.device)
    block_m, block_d, warps = _blocks(D, _TILE)
    add_rmsnorm_fwd_kernel[(cdiv(M, block_m),)](x, y, weight, s, n, rstd, M, D, x.stride(0), y.stride(0), s.stride(0),
                                                n.stride(0), eps, BLOCK_M=block_m, BLOCK_D=block_d, num_warps=warps)
    return s, n, rstd


def add_rms_norm_backward(s, weight, rstd, ds, dn, dy_dtype):
    """(dx in s's dtype, dy in dy_dtype or an empty tensor when that is s's dtype too, dw fp32).

    dx serves x and, when the dtypes agree, y as well (an add's backward)."""
    M, D = s.shape
    dx = torch.empty((M, D), dtype=s.dtype, device=s.device)
    has_dy = dy_dtype != s.dtype
    dy = torch.empty((M, D) if has_dy else (0,), dtype=dy_dtype, device=s.device)
    block_m, block_d, warps = _blocks(D, BWD_TILE)
    programs = min(cdiv(M, block_m), BWD_PROGRAMS_PER_SM * sm_count(s.device))
    dw_part = torch.empty((programs, D), dtype=torch.float32, device=s.device)
    add_rmsnorm_bwd_kernel[(programs,)](s, weight, dn, ds, dx, dy if has_dy else dx, rstd, dw_part, M, D, s.stride(0),
                                        dn.stride(0), ds.stride(0), dx.stride(0), dy.stride(0) if has_dy else 0,
                                        HAS_DY=has_dy, BLOCK_M=block_m, BLOCK_D=block_d, num_warps=warps)
    return dx, dy, dw_part.sum(0)
