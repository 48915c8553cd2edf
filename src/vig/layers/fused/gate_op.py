"""The fused 2D gate (gate.py) as the custom op vig::gated_norm_blend, so torch.compile calls our two
kernels instead of tracing the plain path. Inductor's own version of that path took five kernels per block
and recomputed the forward in the backward (ViG-T compiled training step, H200: benchmarks/NOTES_bigla.md).

Registering the op needs no triton: the kernels' module is imported when the op first runs on a tensor.
"""
from typing import Optional

import torch
from torch.library import custom_op

Tensor = torch.Tensor


def _out_dtype(o, loc, gp):
    return torch.promote_types(torch.promote_types(o.dtype, loc.dtype), gp.dtype)


@custom_op("vig::gated_norm_blend", mutates_args=())
def gated_norm_blend_op(o: Tensor, loc: Tensor, gp: Tensor, wg: Tensor, wl: Tensor, eps: float,
                        out_silu: bool, gp_bias: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """(lerp(rmsnorm(loc) * wl, rmsnorm(o) * wg, sigmoid(gp + gp_bias)), silu'd with out_silu; rstd of o; rstd of
    loc)."""
    from vig.layers.fused.gate import check_gate_args, gate_forward
    check_gate_args(o, loc, gp, wg, wl, "gated_norm_blend", gp_bias)
    return gate_forward(o, loc, gp, wg.contiguous(), wl.contiguous(), eps, out_silu, gp_bias)


@gated_norm_blend_op.register_fake
def _(o, loc, gp, wg, wl, eps, out_silu, gp_bias=None):
    rows = o.numel() // o.shape[-1]
    rstd = o.new_empty(rows, dtype=torch.float32)
    return o.new_empty(o.shape, dtype=_out_dtype(o, loc, gp)), rstd, torch.empty_like(rstd)


@custom_op("vig::gated_norm_blend_backward", mutates_args=())
def gated_norm_blend_backward_op(dout: Tensor, o: Tensor, loc: Tensor, gp: Tensor, wg: Tensor, wl: Tensor,
                                 r_o: Tensor, r_l: Tensor, out_silu: bool
                                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from vig.layers.fused.gate import gate_backward
    return gate_backward(dout, o, loc, gp, wg.contiguous(), wl.contiguous(), r_o, r_l, out_silu)


@gated_norm_blend_backward_op.register_fake
def _(dout, o, loc, gp, wg, wl, r_o, r_l, out_silu):
    return tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for x in (o, loc, gp, wg, wl))


def _setup_context(ctx, inputs, output):
    o, loc, gp, wg, wl, _, out_silu, gp_bias = inputs
    ctx.save_for_backward(o, loc, gp, wg, wl, output[1], output[2], gp_bias)
    ctx.out_silu = out_silu


def _backward(ctx, dout, _d_r_o, _d_r_l):
    # the models pass a bias only without gradients (merged inference); with them, the biased logits are formed here
    from vig.layers.fused.gate import bias_grad, biased
    o, loc, gp, wg, wl, r_o, r_l, gp_bias = ctx.saved_tensors
    grads = gated_norm_blend_backward_op(dout.contiguous(), o, loc, biased(gp, gp_bias), wg, wl, r_o, r_l,
                                         ctx.out_silu)
    return (*grads, None, None, bias_grad(grads[2], gp_bias))


gated_norm_blend_op.register_autograd(_backward, setup_context=_setup_context)


def gated_norm_blend(o, loc, gp, wg, wl, eps, out_silu=False, gp_bias=None):
    """The op's blended output alone (the rstd outputs only feed its backward).

    The op sees [tokens, H, D] views: inductor's layout optimisation (on in graphs with convolutions) gives saved
    4D activations a channels-last layout, so [B, N, H, D] inputs were copied into that layout to be saved and
    back out of it for each op call (3 copies per block each way in ViG-T's compiled training step, H200:
    0.96 ms of 20.7; benchmarks/NOTES_bigla.md, session 18). It leaves 3D tensors alone, and unlike [rows, D]
    views these keep a column slice of a wider projection output (the merged inference GEMM's gp) in place."""
    from vig.layers.fused.gate import check_gate_args
    check_gate_args(o, loc, gp, wg, wl, "gated_norm_blend", gp_bias)
    heads = [x.flatten(0, -3) if x.dim() > 3 else x for x in (o, loc, gp)]
    return gated_norm_blend_op(*heads, wg, wl, float(eps), bool(out_silu), gp_bias)[0].view(o.shape)
