"""FLOP counting that sees the BiGLA op.

`torch.utils.flop_counter` counts matmuls and convolutions but treats a custom op as opaque, so the
recurrence would be missing from every ViG total. We register a formula for `torch.ops.vig.bigla`.

The formula counts the recurrence the way the official FLOPs tables do (spec §6, "+ GLA recurrence"):
per token, per head and per direction, the state update S = diag(a) S + k^T v costs 2·K·V multiply-adds
(decay and outer product) and the readout q S costs K·V more, so the forward pass is

    MACs_fwd = 2 directions · 3 · B·T·H·K·V = 6·B·T·H·K·V      (FLOPs = 2·MACs, flop_counter's convention)

This reproduces spec §6 exactly (ViG-T: 12 blocks · 196 tokens · 3 heads · 6·32·64 = 0.0867 GMACs).
The backward pass of the recurrence costs twice the forward (per direction and token: the dS recurrence
2·K·V, then dq = S·do, dk = dS·v, dv = dS^T·k, dg = rowsum(S ⊙ dS), K·V each), the usual 2x rule.
The chunked algorithms trade this count for denser intra-chunk matmuls; we report the model's work, not
one kernel's, so both backends get the same number.
"""
import importlib

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, flop_registry, register_flop_formula

MACS_PER_TOKEN_HEAD_KV_FWD = 6   # 2 directions x (decay + k^T v + q S)
BWD_OVER_FWD = 2                 # backward of the recurrence costs twice its forward

# The op's registered autograd calls this one (opaque to the counter, like the forward).
_BACKWARD_OP_NAMES = ("bigla_backward",)


def bigla_macs(q_shape, v_shape, backward=False):
    """Multiply-adds of the BiGLA recurrence for q: [B,T,H,K], v: [B,T,H,V] (backward: of its grad)."""
    b, t, h, k = q_shape
    macs = MACS_PER_TOKEN_HEAD_KV_FWD * b * t * h * k * v_shape[-1]
    return macs * BWD_OVER_FWD if backward else macs


def _fwd_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
    return 2 * bigla_macs(q_shape, v_shape)


def _bwd_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
    # vig::bigla_backward(q, k, v, g_fwd, g_bwd, do, scale, backend) -> (dq, dk, dv, dg_fwd, dg_bwd)
    return 2 * bigla_macs(q_shape, v_shape, backward=True)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs):
    """aten.convolution_backward, correct for grouped convs.

    torch's own formula (2.4 ... 2.14) computes grad_weight as a conv with the batch as channels and
    forgets the groups, so a depthwise conv's weight gradient is counted `groups` times (192x in ViG-T:
    0.87 GMACs instead of 0.005). grad_weight costs exactly what the forward conv costs."""
    total = 0
    if output_mask[0]:
        total += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        total += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return total


CORRECTED = {torch.ops.aten.convolution_backward: _conv_backward_flops}


def _op_packet(name):
    """torch.ops.vig.<name> if registered (importing the op's module first), else None."""
    try:
        importlib.import_module("vig.ops.bigla.custom_op")
    except ImportError:
        pass
    try:
        return getattr(torch.ops.vig, name)
    except (AttributeError, RuntimeError):
        return None


def register_bigla_flops():
    """Register the formulas once; safe to call many times and before the op exists. Returns the
    list of registered op packets (empty when the op is not built)."""
    done = []
    for name, formula in [("bigla", _fwd_flops)] + [(n, _bwd_flops) for n in _BACKWARD_OP_NAMES]:
        packet = _op_packet(name)
        if packet is None:
            continue
        if packet not in flop_registry:
            register_flop_formula(packet)(formula)
        done.append(packet)
    return done


def count_flops(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) under a flop counter that knows BiGLA.

    Returns (result, {"total": FLOPs, "bigla": FLOPs of the op incl. its backward, "by_op": {name: FLOPs}})."""
    bigla_ops = register_bigla_flops()
    with FlopCounterMode(display=False, custom_mapping=CORRECTED) as counter:
        result = fn(*args, **kwargs)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    names = {str(p) for p in bigla_ops}
    bigla = sum(v for k, v in by_op.items() if k in names)
    return result, {"total": int(counter.get_total_flops()), "bigla": bigla, "by_op": by_op}


def model_flops(model, img_size, *, train=False, device="meta", in_chans=3):
    """FLOPs of one image through `model` (forward, or forward + backward with train=True).

    On the meta device only shapes are computed, so any resolution costs milliseconds."""
    x = torch.empty(1, in_chans, img_size, img_size, device=device)

    def step():
        out = model(x)
        if train:
            out.float().sum().backward()
        return None

    was_training = model.training
    model.train(train)
    try:
        if train:
            _, counts = count_flops(step)
        else:
            with torch.no_grad():
                _, counts = count_flops(step)
    finally:
        model.train(was_training)
    return counts


# spec §6 (official code, counted at 224²): (conv+linear GMACs, GLA recurrence GMACs) per image, forward.
SPEC_GMACS_224 = {
    "vig_tiny": (1.110, 0.087), "vig_small": (4.366, 0.173), "vig_base": (17.315, 0.347),
    "vig_h_tiny": (4.408, 0.130), "vig_h_small": (8.607, 0.217), "vig_h_base": (15.364, 0.289),
}
