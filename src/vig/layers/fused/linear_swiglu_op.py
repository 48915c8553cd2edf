"""gate_proj + SwiGLU (linear_swiglu.py) as the custom op vig::linear_swiglu, in eager steps and compiled ones.

Its backward is the op vig::linear_swiglu_dh (the recomputing kernel) and two plain matmuls for dx and dw, which
torch.compile traces as usual. FLOPs: the forward counts as the projection it replaces (2 M K 2N); the backward's
recompute counts nothing, so a model's total is the plain path's (the count is the model's work, not a kernel's).

Registering the ops needs no triton: the kernels' module is imported when an op first runs on a tensor.
"""
import os

import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor
SMALL_K = 256  # linear_swiglu.py's block tables split at this K; the widest K the dh + dx walk holds


def check_linear_swiglu_args(x, w):
    if w.dim() != 2 or w.shape[0] % 2 or w.shape[1] != x.shape[-1]:
        raise ValueError(f"linear_swiglu: weight must be [2N, K] with K = x's last dim {x.shape[-1]}, "
                         f"got {tuple(w.shape)}")
    if x.dtype != w.dtype:
        raise ValueError(f"linear_swiglu: x is {x.dtype} but the weight is {w.dtype} (cast both to the compute dtype)")
    if not w.is_contiguous():
        raise ValueError("linear_swiglu: the weight must be contiguous")
    return w.shape[0] // 2


@custom_op("vig::linear_swiglu", mutates_args=())
def linear_swiglu(x: Tensor, w: Tensor) -> Tensor:
    """silu(x Wa^T) * (x Wb^T), [Wa; Wb] = w [2N, K]; x [..., K] -> [..., N]."""
    check_linear_swiglu_args(x, w)
    from vig.layers.fused.linear_swiglu import linear_swiglu_forward
    return linear_swiglu_forward(x, w)


@linear_swiglu.register_fake
def _(x, w):
    return x.new_empty((*x.shape[:-1], check_linear_swiglu_args(x, w)))


@custom_op("vig::linear_swiglu_dh", mutates_args=())
def linear_swiglu_dh(x: Tensor, w: Tensor, dy: Tensor) -> Tensor:
    """The gradient of h = x w^T given dy (linear_swiglu's output grad), h recomputed."""
    from vig.layers.fused.linear_swiglu import linear_swiglu_dh as dh_kernel
    return dh_kernel(x, w, dy)


@linear_swiglu_dh.register_fake
def _(x, w, dy):
    return x.new_empty((*x.shape[:-1], w.shape[0]))


@custom_op("vig::linear_swiglu_dh_dx", mutates_args=())
def linear_swiglu_dh_dx(x: Tensor, w: Tensor, dy: Tensor) -> tuple[Tensor, Tensor]:
    """(dh, dx = dh w) in one kernel (linear_swiglu_dx.py; the opt-in VIG_LINEAR_SWIGLU_BWD=rows backward)."""
    from vig.layers.fused.linear_swiglu_dx import linear_swiglu_dh_dx as kernel
    return kernel(x, w, dy)


@linear_swiglu_dh_dx.register_fake
def _(x, w, dy):
    return x.new_empty((*x.shape[:-1], w.shape[0])), x.new_empty(x.shape)


def bwd_walks_rows(K: int) -> bool:
    """VIG_LINEAR_SWIGLU_BWD=rows, for K <= SMALL_K: linear_swiglu_dh_dx_kernel; blocks (the default): the dh
    kernel's block grid, then dx = dh W on cuBLAS."""
    knob = os.environ.get("VIG_LINEAR_SWIGLU_BWD") or "blocks"
    if knob not in ("blocks", "rows"):
        raise ValueError(f"VIG_LINEAR_SWIGLU_BWD must be blocks or rows, got {knob!r}")
    return knob == "rows" and K <= SMALL_K


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    # the knob is read as the backward is traced: a compiled step keeps the choice it was compiled with (and a
    # warm inductor cache may serve a graph compiled under the other setting: A/B runs take separate cache dirs)
    x, w = ctx.saved_tensors
    if ctx.needs_input_grad[0] and bwd_walks_rows(x.shape[-1]):
        dh, dx = linear_swiglu_dh_dx(x, w, dy.to(x.dtype))
    else:
        dh, dx = linear_swiglu_dh(x, w, dy.to(x.dtype)), None
    dh2 = dh.reshape(-1, dh.shape[-1])
    if dx is None and ctx.needs_input_grad[0]:
        dx = (dh2 @ w).view(x.shape)
    dw = dh2.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
    return dx, dw


linear_swiglu.register_autograd(_backward, setup_context=_setup_context)


def _fwd_flops(x_shape, w_shape, *args, out_shape=None, **kwargs):
    rows = 1
    for n in x_shape[:-1]:
        rows *= n
    return 2 * rows * w_shape[1] * w_shape[0]


def _dh_flops(*args, out_shape=None, **kwargs):
    return 0


def _dh_dx_flops(x_shape, w_shape, *args, out_shape=None, **kwargs):
    # the recompute counts nothing (as vig::linear_swiglu_dh), dx = dh w as the matmul it replaces
    return _fwd_flops(x_shape, w_shape)


for _packet, _formula in ((torch.ops.vig.linear_swiglu, _fwd_flops), (torch.ops.vig.linear_swiglu_dh, _dh_flops),
                          (torch.ops.vig.linear_swiglu_dh_dx, _dh_dx_flops)):
    if _packet not in flop_registry:
        register_flop_formula(_packet)(_formula)
