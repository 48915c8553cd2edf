"""bigla on packed projections: q, k, v read from one [B, T, 2 H K + H V] tensor (the mixer's qkv_proj output),
the two gates from one [B, T, 2 H K] tensor (gk_proj's), and the gradients written straight into tensors of those
two shapes.

bigla() on split views returns five gradients, which autograd (the split's backward) or inductor then concatenates:
two full copies per block per training step (ViG-T, H200, compiled: 0.35 of 20.7 ms). Here the chunk backward's
kernels store their rows into slices of the two packed gradients instead (triton/launch.py, _grad_row_width).

Only the Triton backend is packed; any other backend (and torch.func transforms) takes bigla() on the views, with
the same numbers. torch.compile sees the custom op vig::bigla_packed (one node, no graph break); plain eager calls
take an autograd.Function over the same launchers (the reason is in triton_call.py). Importing this module does
not import triton.
"""
from typing import Optional

import torch
from torch.library import custom_op

from vig.ops.bigla.triton_call import TritonLaunch, _watched, saves_key_states

Tensor = torch.Tensor


def split_packed(qkv, g, num_heads: int, head_k_dim: int):
    """(q, k, v, g_fwd, g_bwd) as [B, T, H, D] views of the packed tensors."""
    kd = num_heads * head_k_dim
    vd = qkv.shape[-1] - 2 * kd
    q, k, v = qkv.split((kd, kd, vd), dim=-1)
    g_fwd, g_bwd = g.split((kd, kd), dim=-1)
    heads = lambda x: x.unflatten(-1, (num_heads, x.shape[-1] // num_heads))  # noqa: E731
    return heads(q), heads(k), heads(v), heads(g_fwd), heads(g_bwd)


def check_packed(qkv, g, num_heads, head_k_dim):
    """Packing errors name the argument; bigla's own checks then run on the views."""
    for name, x in (("qkv", qkv), ("g", g)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"bigla_packed: {name} must be a [B, T, C] tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if num_heads < 1 or head_k_dim < 1:
        raise ValueError(f"bigla_packed: num_heads and head_k_dim must be >= 1, got {num_heads}, {head_k_dim}")
    kd = num_heads * head_k_dim
    vd = qkv.shape[-1] - 2 * kd
    if g.shape[-1] != 2 * kd:
        raise ValueError(f"bigla_packed: g must hold 2 * num_heads * head_k_dim = {2 * kd} gate channels, "
                         f"got {g.shape[-1]}")
    if vd < num_heads or vd % num_heads:
        raise ValueError(f"bigla_packed: qkv's {qkv.shape[-1]} channels leave {vd} for v, which must be a positive "
                         f"multiple of num_heads={num_heads}")
    if qkv.shape[:2] != g.shape[:2]:
        raise ValueError(f"bigla_packed: qkv {tuple(qkv.shape)} and g {tuple(g.shape)} must share [B, T]")


def _forward(qkv, g, num_heads, head_k_dim, scale, gate_normalizer, save_keys=False):
    """o, or with save_keys (o, the key states) (config.save_key_states)."""
    from vig.ops.bigla.triton.launch import bigla_fwd
    return bigla_fwd(*split_packed(qkv, g, num_heads, head_k_dim), scale, gate_normalizer, save_keys=save_keys)


def _forward_saving_keys(*args):
    return _forward(*args, save_keys=True)


def _backward(do, qkv, g, num_heads, head_k_dim, scale, gate_normalizer, key_states=None):
    from vig.ops.bigla.triton.launch import bigla_bwd
    dqkv, dg = (torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in (qkv, g))
    bigla_bwd(do, *split_packed(qkv, g, num_heads, head_k_dim), scale, gate_normalizer,
              outs=split_packed(dqkv, dg, num_heads, head_k_dim), key_states=key_states)
    return dqkv, dg


@custom_op("vig::bigla_packed", mutates_args=())
def bigla_packed_op(qkv: Tensor, g: Tensor, num_heads: int, head_k_dim: int, scale: float,
                    gate_normalizer: Optional[float] = None) -> Tensor:
    return _forward(qkv, g, num_heads, head_k_dim, scale, gate_normalizer)


@bigla_packed_op.register_fake
def _(qkv, g, num_heads, head_k_dim, scale, gate_normalizer=None):
    B, T, W = qkv.shape
    vd = W - 2 * num_heads * head_k_dim
    return qkv.new_empty((B, T, num_heads, vd // num_heads))


@custom_op("vig::bigla_packed_backward", mutates_args=())
def bigla_packed_backward_op(qkv: Tensor, g: Tensor, do: Tensor, num_heads: int, head_k_dim: int, scale: float,
                             gate_normalizer: Optional[float] = None) -> tuple[Tensor, Tensor]:
    return _backward(do, qkv, g, num_heads, head_k_dim, scale, gate_normalizer)


@bigla_packed_backward_op.register_fake
def _(qkv, g, do, num_heads, head_k_dim, scale, gate_normalizer=None):
    return qkv.new_empty(qkv.shape), g.new_empty(g.shape)


def _setup_context(ctx, inputs, output):
    qkv, g, *ctx.args = inputs
    ctx.save_for_backward(qkv, g)


def _op_backward(ctx, do):
    qkv, g = ctx.saved_tensors
    return (*bigla_packed_backward_op(qkv, g, do, *ctx.args), None, None, None, None)


bigla_packed_op.register_autograd(_op_backward, setup_context=_setup_context)


# Where config.save_key_states applies (the default at ViG-T/S/B's head dims; VIG_BIGLA_SAVE_KEY_STATES=0 turns it
# off) the forward also returns the key states, saved for the backward. New op names, so that no compiled graph
# cached for the ops above meets another schema.
@custom_op("vig::bigla_packed_saved_keys", mutates_args=())
def bigla_packed_saved_keys_op(qkv: Tensor, g: Tensor, num_heads: int, head_k_dim: int, scale: float,
                               gate_normalizer: Optional[float] = None) -> tuple[Tensor, Tensor]:
    return _forward(qkv, g, num_heads, head_k_dim, scale, gate_normalizer, save_keys=True)


@bigla_packed_saved_keys_op.register_fake
def _(qkv, g, num_heads, head_k_dim, scale, gate_normalizer=None):
    from vig.ops.bigla.triton.config import key_states_spec
    B, T, W = qkv.shape
    V = (W - 2 * num_heads * head_k_dim) // num_heads
    shape, dtype = key_states_spec(B, T, num_heads, head_k_dim, V, qkv.dtype)
    return qkv.new_empty((B, T, num_heads, V)), qkv.new_empty(shape, dtype=dtype)


@custom_op("vig::bigla_packed_saved_keys_backward", mutates_args=())
def bigla_packed_saved_keys_backward_op(qkv: Tensor, g: Tensor, key_states: Tensor, do: Tensor, num_heads: int,
                                        head_k_dim: int, scale: float,
                                        gate_normalizer: Optional[float] = None) -> tuple[Tensor, Tensor]:
    return _backward(do, qkv, g, num_heads, head_k_dim, scale, gate_normalizer, key_states)


@bigla_packed_saved_keys_backward_op.register_fake
def _(qkv, g, key_states, do, num_heads, head_k_dim, scale, gate_normalizer=None):
    return qkv.new_empty(qkv.shape), g.new_empty(g.shape)


def _setup_saved_keys(ctx, inputs, output):
    qkv, g, *ctx.args = inputs
    ctx.save_for_backward(qkv, g, output[1])
    ctx.mark_non_differentiable(output[1])


def _saved_keys_backward(ctx, do, _):
    qkv, g, key_states = ctx.saved_tensors
    return (*bigla_packed_saved_keys_backward_op(qkv, g, key_states, do, *ctx.args), None, None, None, None)


bigla_packed_saved_keys_op.register_autograd(_saved_keys_backward, setup_context=_setup_saved_keys)


def packed_function(qkv, g, num_heads, head_k_dim, scale, gate_normalizer, saved_keys=False):
    """The eager route: the same launchers through an autograd.Function, without the custom op's dispatch;
    saved_keys: that of vig::bigla_packed_saved_keys."""
    fwd = _forward_saving_keys if saved_keys else _forward
    return TritonLaunch.apply(fwd, _backward, 2, qkv, g, num_heads, head_k_dim, scale, gate_normalizer)


def bigla_packed(qkv, g, num_heads: int, head_k_dim: int, scale=None, *, backend="auto",
                 gate_logit_normalizer=None):
    """bigla(*split_packed(qkv, g, num_heads, head_k_dim), scale, ...) -> [B, T, H, V], with the Triton backend's
    gradients written into packed tensors shaped like qkv and g."""
    from vig.ops.bigla import bigla, resolve_backend
    from vig.ops.bigla.validate import check_inputs
    check_packed(qkv, g, num_heads, head_k_dim)
    views = split_packed(qkv, g, num_heads, head_k_dim)
    q, v = views[0], views[2]
    resolved = resolve_backend(backend, q.device, q.dtype, (q.shape[-1], v.shape[-1]))
    if resolved != "triton" or q.device.type != "cuda" or torch._C._are_functorch_transforms_active():
        return bigla(*views, scale, backend=backend, gate_logit_normalizer=gate_logit_normalizer)
    normalizer = check_inputs(*views, scale, backend, False, gate_logit_normalizer)
    scale = float(head_k_dim ** -0.5 if scale is None else scale)
    saved_keys = saves_key_states(*views)
    if _watched():
        if saved_keys:
            return bigla_packed_saved_keys_op(qkv, g, num_heads, head_k_dim, scale, normalizer)[0]
        return bigla_packed_op(qkv, g, num_heads, head_k_dim, scale, normalizer)
    return packed_function(qkv, g, num_heads, head_k_dim, scale, normalizer, saved_keys)
