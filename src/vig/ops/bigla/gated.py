"""bigla_packed with the ViG mixer's 2D gate as its output epilogue, for inference (no autograd):

    y = lerp(rmsnorm(loc) * w_l, rmsnorm(o) * w_g, sigmoid(gp + gp_bias)),  silu(y) with out_silu

per head of V values, o = bigla_packed(qkv, g, ...). On CUDA where the walking seq forward runs
(launch.gate_epilogue_supported: T <= 256 at ViG's head dims) the forward kernel applies the gate to o's rows before
it stores them (triton/_gate.py), so o is never written and read back by a separate gate kernel. Elsewhere (CPU,
other paths) the op computes the same math in torch, in fp32, rounded once. Importing this module does not import
triton.
"""
from typing import Optional

import torch
from torch.library import custom_op

from vig.ops.bigla.custom_op import torch_bigla
from vig.ops.bigla.packed import check_packed, split_packed

Tensor = torch.Tensor


def gate_reference(o, loc, gp, w_g, w_l, gp_bias, eps, out_silu):
    """The gate in fp32 on [B, T, H, V] views, returned in o's dtype."""
    def norm(x, w):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.float()
    logits = gp.float() if gp_bias is None else gp.float() + gp_bias.float().view(gp.shape[-2:])
    y = torch.lerp(norm(loc, w_l), norm(o, w_g), torch.sigmoid(logits))
    return (torch.nn.functional.silu(y) if out_silu else y).to(o.dtype)


def gate_epilogue_supported(qkv, g, num_heads: int, head_k_dim: int) -> bool:
    """Whether vig::bigla_packed_gated runs as one kernel for these CUDA inputs (else its torch math)."""
    from vig.ops.bigla import resolve_backend
    q, _, v, _, _ = split_packed(qkv, g, num_heads, head_k_dim)
    if not qkv.is_cuda or resolve_backend("auto", q.device, q.dtype, (q.shape[-1], v.shape[-1])) != "triton":
        return False
    from vig.ops.bigla.triton.launch import gate_epilogue_supported as supported
    return supported(q, v)


@custom_op("vig::bigla_packed_gated", mutates_args=())
def bigla_packed_gated_op(qkv: Tensor, g: Tensor, loc: Tensor, gp: Tensor, w_g: Tensor, w_l: Tensor,
                          gp_bias: Optional[Tensor], num_heads: int, head_k_dim: int, scale: float,
                          gate_normalizer: Optional[float], eps: float, out_silu: bool) -> Tensor:
    views = split_packed(qkv, g, num_heads, head_k_dim)
    heads = (num_heads, views[2].shape[-1])
    if gate_epilogue_supported(qkv, g, num_heads, head_k_dim):
        from vig.ops.bigla.triton.launch import bigla_fwd
        return bigla_fwd(*views, scale, gate_normalizer, gate=(loc, gp, gp_bias, w_g, w_l, eps, out_silu))
    with torch.no_grad(), torch.autocast(qkv.device.type, enabled=False):
        o = torch_bigla(*views, scale, gate_normalizer)
        return gate_reference(o, loc.unflatten(-1, heads), gp.unflatten(-1, heads), w_g, w_l, gp_bias, eps,
                              out_silu).contiguous()


@bigla_packed_gated_op.register_fake
def _(qkv, g, loc, gp, w_g, w_l, gp_bias, num_heads, head_k_dim, scale, gate_normalizer, eps, out_silu):
    B, T, W = qkv.shape
    return qkv.new_empty((B, T, num_heads, (W - 2 * num_heads * head_k_dim) // num_heads))


def _check_gate(qkv, loc, gp, w_g, w_l, gp_bias, num_heads):
    B, T, _ = qkv.shape
    for name, x in (("loc", loc), ("gp", gp)):
        if x.dim() != 3 or tuple(x.shape[:2]) != (B, T) or x.stride(-1) != 1:
            raise ValueError(f"bigla_packed_gated: {name} must be [B, T, H * V] = [{B}, {T}, ...] with unit channel "
                             f"stride, got shape {tuple(x.shape)}, strides {tuple(x.stride())}")
    if loc.shape[-1] != gp.shape[-1] or loc.shape[-1] % num_heads:
        raise ValueError(f"bigla_packed_gated: loc and gp must share H * V channels, got {loc.shape[-1]} and "
                         f"{gp.shape[-1]} for {num_heads} heads")
    V = loc.shape[-1] // num_heads
    for name, x, n in (("w_g", w_g, V), ("w_l", w_l, V), ("gp_bias", gp_bias, loc.shape[-1])):
        if x is not None and tuple(x.shape) != (n,):
            raise ValueError(f"bigla_packed_gated: {name} must have shape ({n},), got {tuple(x.shape)}")
    return V


def bigla_packed_gated(qkv, g, loc, gp, w_g, w_l, gp_bias, num_heads: int, head_k_dim: int, *, eps: float,
                       out_silu: bool = False, scale=None, gate_logit_normalizer=None):
    """The gated output [B, T, H, V] in qkv's dtype, at inference (no autograd: the training path keeps
    bigla_packed and the gate's own op). loc, gp: [B, T, H * V]; w_g, w_l: [V]; gp_bias: [H * V] or None."""
    from vig.ops.bigla.gates import check_normalizer
    check_packed(qkv, g, num_heads, head_k_dim)
    V = _check_gate(qkv, loc, gp, w_g, w_l, gp_bias, num_heads)
    vd = qkv.shape[-1] - 2 * num_heads * head_k_dim
    if vd != num_heads * V:
        raise ValueError(f"bigla_packed_gated: loc and gp must have qkv's {vd} value channels, got {loc.shape[-1]}")
    tensors = (qkv, g, loc, gp, w_g, w_l, gp_bias)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in tensors):
        raise RuntimeError("bigla_packed_gated is inference-only: call it under torch.no_grad() / inference_mode")
    scale = float(head_k_dim ** -0.5 if scale is None else scale)
    return bigla_packed_gated_op(qkv, g, loc, gp, w_g, w_l, gp_bias, num_heads, head_k_dim, scale,
                                 check_normalizer(gate_logit_normalizer), float(eps), bool(out_silu))
