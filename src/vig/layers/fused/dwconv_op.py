"""The mixer's depthwise 3x3 conv + SiLU (dwconv.py) as the custom op vig::dwconv3x3, so torch.compile calls our
kernels where it would call cuDNN's channels-last conv, dgrad and wgrad plus inductor's SiLU passes.

Registering the op needs no triton: the kernels' module is imported when the op first runs on a tensor.
"""
import os

import torch
from torch.library import custom_op
from torch.utils.flop_counter import register_flop_formula

Tensor = torch.Tensor


def check_dwconv_args(x, weight, h, w, caller="dwconv3x3"):
    if x.dim() != 2 or not x.is_contiguous():
        raise ValueError(f"{caller}: x must be contiguous token rows [M, C], got shape {tuple(x.shape)} "
                         f"with strides {x.stride()}")
    if tuple(weight.shape) != (x.shape[1], 1, 3, 3):
        raise ValueError(f"{caller}: weight must be [C, 1, 3, 3] = [{x.shape[1]}, 1, 3, 3] for x's {x.shape[1]} "
                         f"channels, got {tuple(weight.shape)}")
    if x.shape[0] >= 2 ** 31:
        raise ValueError(f"{caller}: {x.shape[0]} token rows; the kernels take token indices in 32 bits, so "
                         "fewer than 2**31 rows a call")
    if h <= 0 or w <= 0 or x.shape[0] % (h * w):
        raise ValueError(f"{caller}: {x.shape[0]} token rows are not a whole number of {h} x {w} images")
    if weight.dtype != x.dtype:
        raise ValueError(f"{caller}: weight dtype {weight.dtype} differs from x's {x.dtype}")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"{caller}: x must be fp32, bf16 or fp16, got {x.dtype}")
    if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"{caller}: the Triton kernels need CUDA tensors, got tensors on {x.device}")


@custom_op("vig::dwconv3x3", mutates_args=())
def dwconv3x3_op(x: Tensor, weight: Tensor, h: int, w: int, act: bool) -> Tensor:
    """Depthwise 3x3 conv (padding 1, no bias) of the raster-order tokens x [M, C] of M / (h w) images, SiLU'd
    with act."""
    check_dwconv_args(x, weight, h, w)
    from vig.layers.fused.dwconv import dwconv_forward
    return dwconv_forward(x, weight, (h, w), act)


@dwconv3x3_op.register_fake
def _(x, weight, h, w, act):
    return torch.empty_like(x)


@custom_op("vig::dwconv3x3_backward", mutates_args=())
def dwconv3x3_backward_op(x: Tensor, weight: Tensor, dy: Tensor, h: int, w: int, act: bool
                          ) -> tuple[Tensor, Tensor]:
    from vig.layers.fused.dwconv import dwconv_backward
    return dwconv_backward(x, weight, dy, (h, w), act)


@dwconv3x3_backward_op.register_fake
def _(x, weight, dy, h, w, act):
    return torch.empty_like(x), torch.empty_like(weight, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, weight, h, w, act = inputs
    ctx.save_for_backward(x, weight)
    ctx.hw_act = (h, w, act)


def _backward(ctx, dy):
    x, weight = ctx.saved_tensors
    dx, dw = dwconv3x3_backward_op(x, weight, dy.contiguous(), *ctx.hw_act)
    return dx, dw, None, None, None


dwconv3x3_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.vig.dwconv3x3)
def _fwd_flops(x_shape, *args, out_shape=None, **kwargs):
    """A multiply-add per tap and value, as FlopCounterMode counts F.conv2d's (the SiLU, like its own, is free)."""
    return 2 * 9 * x_shape[0] * x_shape[1]


@register_flop_formula(torch.ops.vig.dwconv3x3_backward)
def _bwd_flops(x_shape, *args, out_shape=None, **kwargs):
    """dx and dw, each as many as the forward (vig.bench.flops' count of aten.convolution_backward)."""
    return 2 * 2 * 9 * x_shape[0] * x_shape[1]


def dwconv3x3_tokens(x, weight, hw, act):
    """x [B, N, C] tokens of (h, w) = hw grids -> the conv (+ SiLU) [B, N, C], under autocast in its dtype (as
    F.conv2d would run)."""
    if torch.is_autocast_enabled(x.device.type):
        dt = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dt), weight.to(dt)
    B, N, C = x.shape
    y = dwconv3x3_op(x.reshape(B * N, C).contiguous(), weight, int(hw[0]), int(hw[1]), bool(act))
    return y.view(B, N, C)
