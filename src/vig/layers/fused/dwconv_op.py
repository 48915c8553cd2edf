"""The mixer's depthwise 3x3 conv (+ SiLU) as the custom op vig::dwconv3x3 (kernels in dwconv.py), so eager
mode and torch.compile both call our Triton kernels instead of cuDNN's depthwise ones. Opt-in
(VIG_FUSED_ON=dwconv_triton): it measured slower than cuDNN in a ViG-T training step (layers/fused/__init__.py).

Registering the op needs no triton: the kernels' module is imported when the op first runs on a tensor.
"""
import torch
from torch.library import custom_op

Tensor = torch.Tensor


@custom_op("vig::dwconv3x3", mutates_args=())
def dwconv3x3_op(x: Tensor, weight: Tensor, h: int, w: int, silu: bool) -> Tensor:
    """act(depthwise conv3x3, padding 1) of tokens x [B, h * w, C] -> [B, h * w, C] contiguous."""
    from vig.layers.fused.dwconv import dwconv_forward
    return dwconv_forward(x, weight, h, w, silu)


@dwconv3x3_op.register_fake
def _(x, weight, h, w, silu):
    return x.new_empty(x.shape)


@custom_op("vig::dwconv3x3_backward", mutates_args=())
def dwconv3x3_backward_op(dy: Tensor, x: Tensor, weight: Tensor, h: int, w: int, silu: bool
                          ) -> tuple[Tensor, Tensor]:
    from vig.layers.fused.dwconv import dwconv_backward
    return dwconv_backward(dy, x, weight, h, w, silu)


@dwconv3x3_backward_op.register_fake
def _(dy, x, weight, h, w, silu):
    return x.new_empty(x.shape), torch.empty_like(weight, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, weight, ctx.h, ctx.w, ctx.silu = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, dy):
    dx, dw = dwconv3x3_backward_op(dy.contiguous(), *ctx.saved_tensors, ctx.h, ctx.w, ctx.silu)
    return dx, dw, None, None, None


dwconv3x3_op.register_autograd(_backward, setup_context=_setup_context)


def check_dwconv_args(x, weight, hw):
    h, w = hw
    if x.dim() != 3 or x.shape[1] != h * w:
        raise ValueError(f"dwconv3x3: x {tuple(x.shape)} must be [B, N, C] with N == h * w = {h} * {w}")
    if weight.shape != (x.shape[2], 1, 3, 3):
        raise ValueError(f"dwconv3x3: weight {tuple(weight.shape)} must be [C, 1, 3, 3] with C = {x.shape[2]}")


def dwconv3x3(x, weight, hw, silu):
    """silu(conv) (or the conv alone) of nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False) with this weight,
    on tokens x [B, N, C] of the (h, w) raster grid; returns [B, N, C]."""
    check_dwconv_args(x, weight, hw)
    if torch.is_autocast_enabled("cuda") and x.is_cuda:  # as nn.Conv2d there: our output dtype matches cuDNN's
        dtype = torch.get_autocast_dtype("cuda")
        x, weight = x.to(dtype), weight.to(dtype)
    return dwconv3x3_op(x, weight, int(hw[0]), int(hw[1]), bool(silu))
