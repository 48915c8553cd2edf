"""The V2 stem's first conv + LayerNorm2d + SiLU (stem.py) as the custom op vig::stem_conv_norm_silu, for inference
in eager and compiled steps (no autograd: training keeps conv_as_gemm and the norm, embed.V2PatchEmbed).

FLOPs: the conv's (2 per multiply-add over the reduction), as the counter counts a convolution; the norm and the SiLU
are not counted, as for the plain path. Registering the op needs no triton.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor


def stem_out_size(x_shape, kernel, stride, padding):
    return tuple((d + 2 * p - k) // s + 1 for d, k, s, p in zip(x_shape[2:], kernel, stride, padding))


def check_stem_args(x, wt, bias, ln_w, ln_b, kernel, stride, padding):
    if x.dim() != 4:
        raise ValueError(f"stem_conv_norm_silu: x must be [B, C, H, W], got {tuple(x.shape)}")
    reduction = x.shape[1] * kernel[0] * kernel[1]
    if wt.dim() != 2 or wt.shape[0] != reduction or not wt.is_contiguous():
        raise ValueError(f"stem_conv_norm_silu: wt must be the contiguous [C * KH * KW, N] = [{reduction}, N] "
                         f"transposed conv weight, got {tuple(wt.shape)}")
    if wt.dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"stem_conv_norm_silu: wt must be bf16 or fp32 (the compute dtype), got {wt.dtype}")
    n = wt.shape[1]
    for name, t in (("bias", bias), ("ln_w", ln_w), ("ln_b", ln_b)):
        if t.shape != (n,) or not t.is_contiguous():
            raise ValueError(f"stem_conv_norm_silu: {name} must be a contiguous [{n}] vector, got {tuple(t.shape)}")
    if min(stem_out_size(x.shape, kernel, stride, padding)) < 1:
        raise ValueError(f"stem_conv_norm_silu: a {tuple(x.shape[2:])} input is smaller than the {tuple(kernel)} "
                         f"kernel with padding {tuple(padding)}")


@custom_op("vig::stem_conv_norm_silu", mutates_args=())
def stem_conv_norm_silu(x: Tensor, wt: Tensor, bias: Tensor, ln_w: Tensor, ln_b: Tensor, kernel: list[int],
                        stride: list[int], padding: list[int], eps: float) -> Tensor:
    """silu(layer_norm(conv2d(x, wt) + bias) * ln_w + ln_b) over the output channels -> [B, Ho, Wo, N] (NHWC) in
    wt's dtype."""
    check_stem_args(x, wt, bias, ln_w, ln_b, kernel, stride, padding)
    from vig.layers.fused.stem import stem_forward
    return stem_forward(x, wt, bias, ln_w, ln_b, kernel, stride, padding, eps)


@stem_conv_norm_silu.register_fake
def _(x, wt, bias, ln_w, ln_b, kernel, stride, padding, eps):
    check_stem_args(x, wt, bias, ln_w, ln_b, kernel, stride, padding)
    return x.new_empty((x.shape[0], *stem_out_size(x.shape, kernel, stride, padding), wt.shape[1]), dtype=wt.dtype)


def _flops(x_shape, wt_shape, *args, out_shape=None, **kwargs):
    pixels = out_shape[0] * out_shape[1] * out_shape[2]
    return 2 * pixels * wt_shape[0] * wt_shape[1]


if torch.ops.vig.stem_conv_norm_silu not in flop_registry:
    register_flop_formula(torch.ops.vig.stem_conv_norm_silu)(_flops)
