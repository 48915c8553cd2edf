"""FLOP counting that sees the BiGLA op and counts grouped-conv backward correctly.

The BiGLA formula itself lives with the op (vig/ops/bigla/flops.py) and is registered when the op is,
so `vig info` and any FlopCounterMode see the recurrence; this module adds the conv fix and helpers.
"""
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from vig.ops.bigla.flops import bigla_macs  # noqa: F401  (re-exported: tests and scripts use flops.bigla_macs)
from vig.ops.bigla.flops import register_bigla_flop_formulas


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


def register_bigla_flops():
    """The op's registered packets (forward and backward); safe to call many times."""
    return register_bigla_flop_formulas()


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
