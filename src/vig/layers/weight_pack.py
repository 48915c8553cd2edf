"""A plain-ViG block's GEMM and conv weights cast to the autocast dtype as one tensor, for inference (on by default
since session 37: ViG-T +1.7% on an H100; VIG_FUSED_OFF=weight_pack turns it off).

Under autocast every linear and conv casts its fp32 weight on every call. In ViG-T's compiled inference step those
are six small kernels a block (the merged projections' stack, gk_proj's second layer, o_proj, the depthwise conv,
gate_proj, down_proj), 1.5-1.8 us each under CUDA graphs: 0.113 of 5.19 ms on an H100 (NOTES session 36). Here one
`cat` of the block's eight flattened weights, cast once, is one kernel (inductor writes a cat of up to 8 inputs,
its max_pointwise_cat_inputs, as one pointwise kernel), and the layers take views of it, on which autocast casts
nothing.
"""
import torch

from vig.layers.bigla_attn import stack_width
from vig.layers.fused import rewrite_enabled


def block_weights(block, x):
    """{"stack", "gk1", "o", "dw", "gate", "down"}: views of block's weights in the autocast dtype, or None where the
    pack does not apply (gradients on, no autocast, not CUDA, or not asked for). "stack" is the merged projections'
    weight (bigla_attn.merged_projections) with stack_width's rows: its pad rows are the weights that follow it in
    the pack, whose output columns are never read."""
    # the route's check first: it needs CUDA, and autocast has no state to ask for meta tensors (FLOP counts)
    if torch.is_grad_enabled() or not rewrite_enabled(x, "weight_pack"):
        return None
    if not torch.is_autocast_enabled(x.device.type):
        return None
    attn, mlp = block.attn, block.mlp
    parts = {"stack": (attn.qkv_proj.weight, attn.gk_proj[0].weight, attn.g_proj.weight),
             "gk1": (attn.gk_proj[1].weight,), "o": (attn.o_proj.weight,), "dw": (attn.in_proj[0].weight,),
             "gate": (mlp.gate_proj.weight,), "down": (mlp.down_proj.weight,)}
    flat = torch.cat([w.reshape(-1) for ws in parts.values() for w in ws]).to(torch.get_autocast_dtype(x.device.type))
    views, start = {}, 0
    for name, ws in parts.items():
        rows = sum(w.shape[0] for w in ws)
        shape = (rows, *ws[0].shape[1:])
        if name == "stack":
            shape = (stack_width(rows), *shape[1:])
        views[name] = flat[start:start + shape[0] * ws[0][0].numel()].view(shape)
        start += rows * ws[0][0].numel()
    return views
