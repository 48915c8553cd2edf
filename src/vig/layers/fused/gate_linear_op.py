"""The mixer's 2D gate + o_proj (gate_linear.py) as the custom op vig::gate_linear, in eager steps and compiled ones.

Its forward never writes the gate's output. The backward has to have it (o_proj's weight gradient reads it), so it
recomputes it with the gate's own forward op and runs the gate's backward op: a training step would re-read the
three inputs to save one write and read of the output, which is why the mixer takes this op for inference only
(bigla_attn.py). The autograd is registered all the same, so a caller that does need grads gets right ones.
FLOPs: the forward counts as the o_proj it replaces (2 M C N); the backward's matmuls are counted as they run.

Registering the op needs no triton: the kernel's module is imported when the op first runs on a tensor.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

from vig.layers.fused.gate_op import gated_norm_blend_backward_op, gated_norm_blend_op

Tensor = torch.Tensor


def check_gate_linear_args(o, loc, gp, wg, wl, w):
    """The output's width N; clear errors for what the kernel cannot take."""
    if not (o.shape == loc.shape == gp.shape):
        raise ValueError(f"gate_linear: o {tuple(o.shape)}, loc {tuple(loc.shape)} and gate {tuple(gp.shape)} "
                         f"must have one shape")
    C, D = o.shape[-1], wg.numel()
    if wg.shape != (D,) or wl.shape != (D,) or D == 0 or C % D:
        raise ValueError(f"gate_linear: norm weights {tuple(wg.shape)}, {tuple(wl.shape)} must both be (D,) with "
                         f"D a divisor of the channels C = {C} (one head's width)")
    if w.dim() != 2 or w.shape[1] != C:
        raise ValueError(f"gate_linear: weight must be [N, C] with C = {C}, got {tuple(w.shape)}")
    if w.stride(-1) != 1:
        raise ValueError("gate_linear: the weight's rows must be contiguous (unit stride along C)")
    return w.shape[0]


@custom_op("vig::gate_linear", mutates_args=())
def gate_linear(o: Tensor, loc: Tensor, gp: Tensor, wg: Tensor, wl: Tensor, w: Tensor, eps: float,
                out_silu: bool) -> Tensor:
    """gate(o, loc, gp) w^T; o, loc, gp [..., C] in heads of D = wg.numel(), w [N, C] -> [..., N] in w's dtype."""
    check_gate_linear_args(o, loc, gp, wg, wl, w)
    from vig.layers.fused.gate_linear import gate_linear_forward
    return gate_linear_forward(o, loc, gp, wg.contiguous(), wl.contiguous(), w, eps, out_silu)


@gate_linear.register_fake
def _(o, loc, gp, wg, wl, w, eps, out_silu):
    return o.new_empty((*o.shape[:-1], check_gate_linear_args(o, loc, gp, wg, wl, w)), dtype=w.dtype)


def _setup_context(ctx, inputs, output):
    o, loc, gp, wg, wl, w, eps, out_silu = inputs
    ctx.save_for_backward(o, loc, gp, wg, wl, w)
    ctx.eps, ctx.out_silu = eps, out_silu


def _backward(ctx, dy):
    o, loc, gp, wg, wl, w = ctx.saved_tensors
    D, C = wg.numel(), o.shape[-1]
    heads = [x.reshape(-1, D) for x in (o, loc, gp)]  # the gate ops take rows of one head
    out, r_o, r_l = gated_norm_blend_op(*heads, wg, wl, ctx.eps, ctx.out_silu)
    dy2 = dy.reshape(-1, w.shape[0]).to(w.dtype)
    dout = (dy2 @ w).reshape(-1, D)
    d_o, d_l, d_g, d_wg, d_wl = gated_norm_blend_backward_op(dout, *heads, wg, wl, r_o, r_l, ctx.out_silu)
    dw = dy2.t() @ out.reshape(-1, C).to(w.dtype) if ctx.needs_input_grad[5] else None
    return (d_o.view(o.shape), d_l.view(loc.shape), d_g.view(gp.shape), d_wg, d_wl, dw, None, None)


gate_linear.register_autograd(_backward, setup_context=_setup_context)


def _fwd_flops(o_shape, loc_shape, gp_shape, wg_shape, wl_shape, w_shape, *args, out_shape=None, **kwargs):
    rows = 1
    for n in o_shape[:-1]:
        rows *= n
    return 2 * rows * w_shape[1] * w_shape[0]


if torch.ops.vig.gate_linear not in flop_registry:
    register_flop_formula(torch.ops.vig.gate_linear)(_fwd_flops)
