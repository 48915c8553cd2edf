"""low_rank_gate.py's kernels as the custom op vig::low_rank_gate with a registered autograd: gk_proj's two layers in
training, in eager and compiled steps (bigla_attn.gate_projection decides: on by default at widths up to
ROUTE_MAX_WIDTH since session 45, VIG_FUSED_OFF=gk_proj_train for the module path).

FLOPs: the forward's two GEMMs as the counter counts the module's mms; the backward's five products (the low-rank rows
recomputed, dlow, dW1, dW0 and dx), one more than the module's backward runs. Registering the ops needs no triton.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

from vig.layers.fused.low_rank_op import RANKS  # the same dot's K as gk_proj's second layer at inference

Tensor = torch.Tensor
COMPUTE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)  # x's dtype, the one the kernels compute in
MAX_WIDTH = 512  # whole rows a tile (ViG-T's and ViG-S's widths; ViG-B's overflowed shared memory)
# the widths where the models take the op: it timed faster than the module path at ViG-T's 192 and slower at ViG-S's
# 384 (H100, session 45; low_rank_gate.ROW_ELEMENTS)
ROUTE_MAX_WIDTH = 256


def check_low_rank_gate_args(x, w0, w1, bias):
    r = w0.shape[0] if w0.dim() == 2 else -1
    if r not in RANKS:
        raise ValueError(f"low_rank_gate: the rank (w0's rows) must be one of {RANKS}, got shape {tuple(w0.shape)}")
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"low_rank_gate: x must be [rows, channels] with unit column stride, got shape "
                         f"{tuple(x.shape)} strides {x.stride()}")
    c = x.shape[1]
    if w0.shape != (r, c) or not w0.is_contiguous():
        raise ValueError(f"low_rank_gate: w0 must be a contiguous [{r}, {c}] matrix, got {tuple(w0.shape)}")
    if w1.dim() != 2 or w1.shape[1] != r or not w1.is_contiguous():
        raise ValueError(f"low_rank_gate: w1 must be a contiguous [N, {r}] matrix, got {tuple(w1.shape)}")
    if bias.shape != (w1.shape[0],) or not bias.is_contiguous():
        raise ValueError(f"low_rank_gate: bias must be a contiguous [{w1.shape[0]}] vector, got {tuple(bias.shape)}")
    if max(c, w1.shape[0]) > MAX_WIDTH:
        raise ValueError(f"low_rank_gate: channels {c} and outputs {w1.shape[0]} must be at most {MAX_WIDTH}")
    if x.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"low_rank_gate: x must be bf16, fp16 or fp32 (its dtype is the compute dtype), got {x.dtype}")
    if not all(t.is_floating_point() for t in (w0, w1, bias)):
        raise ValueError("low_rank_gate: w0, w1 and bias must be floating point")


@custom_op("vig::low_rank_gate", mutates_args=())
def low_rank_gate(x: Tensor, w0: Tensor, w1: Tensor, bias: Tensor) -> Tensor:
    """(x [M, C] @ w0^T) @ w1^T + bias -> [M, N], contiguous, computed in x's dtype (weights rounded to it)."""
    check_low_rank_gate_args(x, w0, w1, bias)
    from vig.layers.fused.low_rank_gate import low_rank_gate_forward
    return low_rank_gate_forward(x, w0, w1, bias)


@low_rank_gate.register_fake
def _(x, w0, w1, bias):
    check_low_rank_gate_args(x, w0, w1, bias)
    return x.new_empty((x.shape[0], w1.shape[0]))


@custom_op("vig::low_rank_gate_bwd", mutates_args=())
def low_rank_gate_bwd(dy: Tensor, x: Tensor, w0: Tensor, w1: Tensor) -> tuple[Tensor, Tensor]:
    """(dx [M, C] in x's dtype; dW0 [R, C], dW1 [N, R] and db [N] in fp32, flattened one after the other)."""
    from vig.layers.fused.low_rank_gate import low_rank_gate_backward
    return low_rank_gate_backward(dy.contiguous() if dy.stride(-1) != 1 else dy, x, w0, w1)


@low_rank_gate_bwd.register_fake
def _(dy, x, w0, w1):
    r, n = w0.shape[0], w1.shape[0]
    return x.new_empty(x.shape), x.new_empty((r * x.shape[1] + n * r + n,), dtype=torch.float32)


def _setup(ctx, inputs, output):
    x, w0, w1, bias = inputs
    ctx.save_for_backward(x, w0, w1)
    ctx.bias_dtype = bias.dtype


def _backward(ctx, dy):
    x, w0, w1 = ctx.saved_tensors
    if dy.dtype != x.dtype:
        dy = dy.to(x.dtype)
    dx, dw = low_rank_gate_bwd(dy, x, w0, w1)
    dw0, dw1, db = dw.split((w0.numel(), w1.numel(), w1.shape[0]))
    return dx, dw0.view(w0.shape).to(w0.dtype), dw1.view(w1.shape).to(w1.dtype), db.to(ctx.bias_dtype)


low_rank_gate.register_autograd(_backward, setup_context=_setup)


def _fwd_flops(x_shape, w0_shape, w1_shape, *args, out_shape=None, **kwargs):
    return 2 * x_shape[0] * w0_shape[0] * (x_shape[1] + w1_shape[0])


def _bwd_flops(dy_shape, x_shape, w0_shape, w1_shape, *args, out_shape=None, **kwargs):
    m, c, r, n = x_shape[0], x_shape[1], w0_shape[0], w1_shape[0]
    return 2 * m * r * (3 * c + 2 * n)


for _op, _formula in ((torch.ops.vig.low_rank_gate, _fwd_flops), (torch.ops.vig.low_rank_gate_bwd, _bwd_flops)):
    if _op not in flop_registry:
        register_flop_formula(_op)(_formula)
