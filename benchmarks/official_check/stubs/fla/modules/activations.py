"""Stub of fla.modules.activations: swiglu, swiglu_linear. Written from the official kernels' semantics, not copied."""

import torch.nn.functional as F


def swiglu(x, y):
    # jiterator swiglu_fwd: x * y / (1 + exp(-x)) = silu(x) * y
    return F.silu(x) * y


def swiglu_linear(x, y, weight, bias):
    # SwiGLULinearFunction.forward: linear(swiglu(x, y), weight, bias)
    return F.linear(swiglu(x, y).to(weight.dtype), weight, bias)
