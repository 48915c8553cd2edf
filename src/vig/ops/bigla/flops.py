"""FLOP formulas for torch.ops.vig.bigla and its backward, registered with torch.utils.flop_counter.

A custom op is opaque to the counter, so without these the recurrence would be missing from every
ViG total. The count follows the official FLOPs tables (spec §6, "+ GLA recurrence"): per token, head
and direction the state update S = diag(a) S + k^T v costs 2·K·V multiply-adds and the readout q S
K·V more, so MACs_fwd = 2 directions · 3 · B·T·H·K·V (ViG-T: 12 · 196 · 3 · 6·32·64 = 0.0867 GMACs).
The backward costs twice the forward (dS recurrence, then dq, dk, dv, dg: K·V each). Both backends
get the same number: we report the model's work, not one kernel's.
"""
import torch
from torch.utils.flop_counter import flop_registry, register_flop_formula

MACS_PER_TOKEN_HEAD_KV_FWD = 6   # 2 directions x (decay + k^T v + q S)
BWD_OVER_FWD = 2


def bigla_macs(q_shape, v_shape, backward=False):
    """Multiply-adds of the BiGLA recurrence for q: [B,T,H,K], v: [B,T,H,V] (backward: of its grad)."""
    b, t, h, k = q_shape
    macs = MACS_PER_TOKEN_HEAD_KV_FWD * b * t * h * k * v_shape[-1]
    return macs * BWD_OVER_FWD if backward else macs


def _fwd_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
    return 2 * bigla_macs(q_shape, v_shape)


def _bwd_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
    # vig::bigla_backward(q, k, v, g_fwd, g_bwd, do, scale, backend, gate_normalizer=None)
    #   -> (dq, dk, dv, dg_fwd, dg_bwd); the gate logits' logsigmoid is not counted (a few ops per gate)
    return 2 * bigla_macs(q_shape, v_shape, backward=True)


def _packed_shapes(qkv_shape, num_heads, head_k_dim):
    B, T, W = qkv_shape
    return (B, T, num_heads, head_k_dim), (B, T, num_heads, (W - 2 * num_heads * head_k_dim) // num_heads)


def _packed_fwd_flops(qkv_shape, g_shape, num_heads, head_k_dim, *args, out_shape=None, **kwargs):
    # vig::bigla_packed(qkv, g, num_heads, head_k_dim, scale, gate_normalizer=None) (packed.py)
    return 2 * bigla_macs(*_packed_shapes(qkv_shape, num_heads, head_k_dim))


def _packed_bwd_flops(qkv_shape, g_shape, do_shape, num_heads, head_k_dim, *args, out_shape=None, **kwargs):
    return 2 * bigla_macs(*_packed_shapes(qkv_shape, num_heads, head_k_dim), backward=True)


def _packed_saved_keys_bwd_flops(qkv_shape, g_shape, key_states_shape, do_shape, num_heads, head_k_dim, *args,
                                 out_shape=None, **kwargs):
    # the same math as vig::bigla_packed_backward: the key states' walk moved into the forward, which repeats none
    # of it (its walks compute them anyway), so both ops keep bigla's counts
    return _packed_bwd_flops(qkv_shape, g_shape, do_shape, num_heads, head_k_dim)


def register_bigla_flop_formulas():
    """Idempotent; called once by custom_op.py right after the ops are defined (this also defines the packed
    form's ops, packed.py)."""
    import vig.ops.bigla.packed  # noqa: F401
    packets = [(torch.ops.vig.bigla, _fwd_flops), (torch.ops.vig.bigla_backward, _bwd_flops),
               (torch.ops.vig.bigla_packed, _packed_fwd_flops),
               (torch.ops.vig.bigla_packed_backward, _packed_bwd_flops),
               (torch.ops.vig.bigla_packed_saved_keys, _packed_fwd_flops),
               (torch.ops.vig.bigla_packed_saved_keys_backward, _packed_saved_keys_bwd_flops)]
    for packet, formula in packets:
        if packet not in flop_registry:
            register_flop_formula(packet)(formula)
    return [p for p, _ in packets]
