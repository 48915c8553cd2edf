"""Residual add + RMSNorm over the last dim as one Triton kernel each way:

    s = x + y,    n = rmsnorm(s) * w                              (fp32 math, fp32 statistics)

The plain path writes s, reads it back for the norm's ~7 elementwise kernels and, in the
backward, adds the residual grad to the norm's input grad in one more kernel. Here x and y are
read once and s, n written once; the backward reads s, dn, ds once and writes one grad that
serves both x and y (as an add's backward does). The norm uses the fp32 sum before it is
rounded to s's dtype, so a bf16 stream loses no more than the plain path.
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv

from vig.layers.fused.rmsnorm import _MAX_D, _blocks, _rows

_TILE = 4096


@triton.jit
def _fwd_kernel(X, Y, W, S, N, RSTD, M, D, s_x, s_y, s_s, s_n, eps,
                BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
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
def _bwd_kernel(S, W, DN, DS, DSUM, RSTD, DW_PART, M, D, s_s, s_dn, s_ds, s_d,
                HAS_DS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    rmask, cmask = rows < M, cols < D
    mask = rmask[:, None] & cmask[None, :]
    s = tl.load(S + rows[:, None] * s_s + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    dn = tl.load(DN + rows[:, None] * s_dn + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    shat = s * rstd[:, None]
    a = dn * w[None, :]
    # rmsnorm backward rstd * (g - s_hat * mean(g * s_hat)), g = dn * w, plus the residual grad
    d = (a - shat * (tl.sum(a * shat, axis=1) / D)[:, None]) * rstd[:, None]
    if HAS_DS:
        d += tl.load(DS + rows[:, None] * s_ds + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(DSUM + rows[:, None] * s_d + cols[None, :], d.to(DSUM.dtype.element_ty), mask=mask)
    tl.store(DW_PART + pid * D + cols, tl.sum(dn * shat, axis=0), mask=cmask)


class _FusedAddRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, weight, eps):
        ctx.set_materialize_grads(False)
        shape, D = x.shape, x.shape[-1]
        x2, y2 = _rows(x), _rows(y)
        M = x2.shape[0]
        dtype = torch.promote_types(x.dtype, y.dtype)
        s = torch.empty((M, D), dtype=dtype, device=x.device)
        n = torch.empty_like(s)
        rstd = torch.empty(M, dtype=torch.float32, device=x.device)
        block_m, block_d, warps = _blocks(D, _TILE)
        _fwd_kernel[(cdiv(M, block_m),)](x2, y2, weight, s, n, rstd, M, D, x2.stride(0), y2.stride(0),
                                                 s.stride(0), n.stride(0), eps,
                                                 BLOCK_M=block_m, BLOCK_D=block_d, num_warps=warps)
        s = s.view(shape)
        ctx.save_for_backward(s, weight, rstd)  # s is an output: autograd catches in-place edits of it
        ctx.shape, ctx.dtypes = shape, (x.dtype, y.dtype)
        return s, n.view(shape)

    @staticmethod
    def backward(ctx, ds, dn):
        s, weight, rstd = ctx.saved_tensors
        s = s.view(-1, s.shape[-1])
        if dn is None:  # n unused: the add's backward alone
            return (None if ds is None else ds.to(ctx.dtypes[0]), None if ds is None else ds.to(ctx.dtypes[1]),
                    None, None)
        M, D = s.shape
        dn2 = _rows(dn)
        ds2 = _rows(ds) if ds is not None else dn2
        d = torch.empty((M, D), dtype=s.dtype, device=s.device)
        block_m, block_d, warps = _blocks(D, _TILE)
        grid = cdiv(M, block_m)
        dw_part = torch.empty((grid, D), dtype=torch.float32, device=s.device)
        _bwd_kernel[(grid,)](s, weight, dn2, ds2, d, rstd, dw_part, M, D, s.stride(0), dn2.stride(0),
                             ds2.stride(0), d.stride(0), HAS_DS=ds is not None,
                             BLOCK_M=block_m, BLOCK_D=block_d, num_warps=warps)
        d = d.view(ctx.shape)
        dw = dw_part.sum(0).to(weight.dtype) if ctx.needs_input_grad[2] else None
        return d.to(ctx.dtypes[0]), d.to(ctx.dtypes[1]), dw, None


def add_rms_norm_fused(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, eps: float):
    """(s, n) = (x + y, rmsnorm(x + y) * weight) over the last dim, both in the promoted dtype of x, y."""
    if x.shape != y.shape:
        raise ValueError(f"add_rms_norm_fused: x {tuple(x.shape)} and y {tuple(y.shape)} must have one shape "
                         "(no broadcasting)")
    if weight.dim() != 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"add_rms_norm_fused: weight shape {tuple(weight.shape)} does not match last dim of x "
                         f"{tuple(x.shape)}")
    if x.shape[-1] > _MAX_D:
        raise ValueError(f"add_rms_norm_fused: last dim {x.shape[-1]} > {_MAX_D} (one row per register tile)")
    if x.device != y.device or x.device != weight.device:
        raise ValueError(f"add_rms_norm_fused: x, y, weight on {x.device}, {y.device}, {weight.device}; "
                         "need one device")
    if x.numel() == 0:
        s = x + y
        return s, (s.float() * weight.float()).to(s.dtype)
    return _FusedAddRMSNorm.apply(x, y, weight.contiguous(), float(eps))
