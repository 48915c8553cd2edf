"""RMSNorm over the last dim as one Triton kernel each way (fp32 math, input dtype out).

The plain path (x.float(), pow, mean, rsqrt, two muls, cast) launches ~7 elementwise kernels
and moves the row through HBM each time; this reads x once and writes y once. The backward
recomputes x_hat from x and the saved per-row rstd and writes per-block partial weight grads
that one torch sum reduces, so no atomics and a deterministic result.
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv, next_pow2

from vig.layers.fused import MAX_NORM_DIM, as_rows


@triton.jit
def _row_tile(pid, M, D, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Program pid's BLOCK_M rows (int64: M * stride can pass 2**31) and the row's columns, with their masks."""
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < M
    cmask = cols < D
    return rows, cols, rmask, cmask, rmask[:, None] & cmask[None, :]


@triton.jit
def rmsnorm_fwd_kernel(X, W, Y, RSTD, M, D, stride_x, stride_y, eps,
                       BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    rows, cols, rmask, cmask, mask = _row_tile(pid, M, D, BLOCK_M, BLOCK_D)
    x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / D + eps)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    y = x * rstd[:, None] * w[None, :]
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=rmask)


@triton.jit
def rmsnorm_bwd_kernel(X, W, DY, DX, RSTD, DW_PART, M, D, stride_x, stride_dy, stride_dx,
                       BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    rows, cols, rmask, cmask, mask = _row_tile(pid, M, D, BLOCK_M, BLOCK_D)
    x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    xhat = x * rstd[:, None]
    wdy = dy * w[None, :]
    # d/dx of x*rstd: rstd * (g - x_hat * mean(g * x_hat)) with g = dy * w
    c = tl.sum(wdy * xhat, axis=1) / D
    dx = (wdy - xhat * c[:, None]) * rstd[:, None]
    tl.store(DX + rows[:, None] * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
    tl.store(DW_PART + pid * D + cols, tl.sum(dy * xhat, axis=0), mask=cmask)


def _blocks(D, tile=4096):
    """(rows per program, padded row length, warps): about `tile` fp32 values per live tensor."""
    block_d = next_pow2(D)
    block_m = max(1, min(128, tile // block_d))
    return block_m, block_d, (4 if block_d <= 1024 else 8)


class _FusedRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        shape, D = x.shape, x.shape[-1]
        x2 = as_rows(x)
        M = x2.shape[0]
        y = torch.empty((M, D), dtype=x.dtype, device=x.device)
        rstd = torch.empty(M, dtype=torch.float32, device=x.device)
        block_m, block_d, warps = _blocks(D)
        rmsnorm_fwd_kernel[(cdiv(M, block_m),)](x2, weight, y, rstd, M, D, x2.stride(0), y.stride(0), eps,
                                                        BLOCK_M=block_m, BLOCK_D=block_d, num_warps=warps)
        ctx.save_for_backward(x2, weight, rstd)
        ctx.shape = shape
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        M, D = x2.shape
        dy2 = as_rows(dy)
        dx = torch.empty((M, D), dtype=x2.dtype, device=x2.device)
        block_m, block_d, warps = _blocks(D)
        grid = cdiv(M, block_m)
        dw_part = torch.empty((grid, D), dtype=torch.float32, device=x2.device)
        rmsnorm_bwd_kernel[(grid,)](x2, weight, dy2, dx, rstd, dw_part, M, D, x2.stride(0), dy2.stride(0), dx.stride(0),
                                    BLOCK_M=block_m, BLOCK_D=block_d, num_warps=warps)
        dw = dw_part.sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return dx.view(ctx.shape), dw, None


def rms_norm_fused(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of x over its last dim (any leading shape/strides), result in x.dtype."""
    if x.shape[-1] != weight.shape[0] or weight.dim() != 1:
        raise ValueError(f"rms_norm_fused: weight shape {tuple(weight.shape)} does not match last dim of x "
                         f"{tuple(x.shape)}")
    if x.shape[-1] > MAX_NORM_DIM:
        raise ValueError(f"rms_norm_fused: last dim {x.shape[-1]} > {MAX_NORM_DIM} (one row per register tile)")
    if x.numel() == 0:
        return x.float().mul(weight.float()).to(x.dtype)
    return _FusedRMSNorm.apply(x, weight.contiguous(), float(eps))
