"""The fused residual add + RMSNorm (add_rmsnorm.py) as the custom op vig::add_rms_norm, so torch.compile calls
our two kernels instead of fusing the plain path itself (see add_rmsnorm.py for what that costs).

Registering the op needs no triton: the kernels' module is imported when the op first runs on a tensor.
"""
from typing import Optional

import torch
from torch.library import custom_op

from vig.layers.fused import MAX_NORM_DIM, as_rows

Tensor = torch.Tensor


@custom_op("vig::add_rms_norm", mutates_args=())
def add_rms_norm_op(x: Tensor, y: Tensor, weight: Tensor, eps: float, n_dtype: torch.dtype
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """x, y [M, D] -> (s = x + y, n = rmsnorm(s) * weight in n_dtype, rstd [M] fp32)."""
    from vig.layers.fused.add_rmsnorm import add_rms_norm_forward
    return add_rms_norm_forward(x, y, weight.contiguous(), eps, n_dtype)


@add_rms_norm_op.register_fake
def _(x, y, weight, eps, n_dtype):
    s = x.new_empty(x.shape, dtype=torch.promote_types(x.dtype, y.dtype))
    return s, x.new_empty(x.shape, dtype=n_dtype), x.new_empty(x.shape[0], dtype=torch.float32)


@custom_op("vig::add_rms_norm_backward", mutates_args=())
def add_rms_norm_backward_op(s: Tensor, weight: Tensor, rstd: Tensor, ds: Tensor, dn: Tensor,
                             dy_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(grad of x in s's dtype; grad of y in dy_dtype, empty when that is s's dtype; grad of weight, fp32)."""
    from vig.layers.fused.add_rmsnorm import add_rms_norm_backward
    return add_rms_norm_backward(s, weight.contiguous(), rstd, ds, dn, dy_dtype)


@add_rms_norm_backward_op.register_fake
def _(s, weight, rstd, ds, dn, dy_dtype):
    dy = s.new_empty(s.shape if dy_dtype != s.dtype else (0,), dtype=dy_dtype)
    return torch.empty_like(s), dy, weight.new_empty(weight.shape, dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    x, y, weight, _, _ = inputs
    ctx.save_for_backward(output[0], weight, output[2])
    ctx.dtypes = (x.dtype, y.dtype, weight.dtype)


def _backward(ctx, ds, dn, _drstd):
    # the custom op's autograd hands zeros, never None, for an unused output's grad
    s, weight, rstd = ctx.saved_tensors
    x_dtype, y_dtype, w_dtype = ctx.dtypes
    dx, dy, dw = add_rms_norm_backward_op(s, weight, rstd, ds.contiguous(), dn.contiguous(), y_dtype)
    return dx.to(x_dtype), (dy if y_dtype != s.dtype else dx.to(y_dtype)), dw.to(w_dtype), None, None


add_rms_norm_op.register_autograd(_backward, setup_context=_setup_context)


def check_add_rms_norm_args(x, y, weight, caller="add_rms_norm_fused"):
    if x.shape != y.shape:
        raise ValueError(f"{caller}: x {tuple(x.shape)} and y {tuple(y.shape)} must have one shape (no broadcasting)")
    if weight.dim() != 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"{caller}: weight shape {tuple(weight.shape)} does not match last dim of x "
                         f"{tuple(x.shape)}")
    if x.shape[-1] > MAX_NORM_DIM:
        raise ValueError(f"{caller}: last dim {x.shape[-1]} > {MAX_NORM_DIM} (one row per register tile)")
    if x.device != y.device or x.device != weight.device:
        raise ValueError(f"{caller}: x, y, weight on {x.device}, {y.device}, {weight.device}; need one device")


def add_rms_norm_fused(x: Tensor, y: Tensor, weight: Tensor, eps: float, n_dtype: Optional[torch.dtype] = None):
    """(s, n) = (x + y, rmsnorm(x + y) * weight) over the last dim; s in the promoted dtype of x and y, n in
    n_dtype (default: s's). The op sees [rows, D] views, as vig::gated_norm_blend does and for its reason."""
    check_add_rms_norm_args(x, y, weight)
    s_dtype = torch.promote_types(x.dtype, y.dtype)
    n_dtype = s_dtype if n_dtype is None else n_dtype
    if x.numel() == 0:
        s = x + y
        return s, (s.float() * weight.float()).to(n_dtype)
    s, n, _ = add_rms_norm_op(as_rows(x), as_rows(y), weight, float(eps), n_dtype)
    return s.view(x.shape), n.view(x.shape)
