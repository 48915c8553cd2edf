"""gate_proj + SwiGLU (linear_swiglu.py) as the custom op vig::linear_swiglu, in eager steps and compiled ones.

Its backward is the op vig::linear_swiglu_dh (the recomputing kernel) and two plain matmuls for dx and dw, which
torch.compile traces as usual. FLOPs: the forward counts as the projection it replaces (2 M K 2N); the backward's
recompute counts nothing, so a model's total is the plain path's (the count is the model's work, not a kernel's).

Registering the ops needs no triton: the kernels' module is imported when an op first runs on a tensor.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor


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


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    x, w = ctx.saved_tensors
    return _input_grads(ctx, x, w, linear_swiglu_dh(x, w, dy.to(x.dtype)))


def _input_grads(ctx, x, w, dh):
    """(dx, dw) from h's gradient: two plain matmuls, which torch.compile traces as usual."""
    dh2 = dh.reshape(-1, dh.shape[-1])
    dx = (dh2 @ w).view(x.shape) if ctx.needs_input_grad[0] else None
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


for _packet, _formula in ((torch.ops.vig.linear_swiglu, _fwd_flops), (torch.ops.vig.linear_swiglu_dh, _dh_flops)):
    if _packet not in flop_registry:
        register_flop_formula(_packet)(_formula)
