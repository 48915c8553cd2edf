"""The V2 stem's first conv + LayerNorm2d + SiLU (stem.py) as the custom op vig::stem_conv_norm_silu, for inference
in eager and compiled steps (no autograd: training keeps conv_as_gemm and the norm, embed.V2PatchEmbed).

FLOPs: the conv's (2 per multiply-add over the reduction), as the counter counts a convolution; the norm and the SiLU
are not counted, as for the plain path. Registering the op needs no triton.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor


def stem_out_size(x_shape, kernel, stride):
    return tuple((d + 2 - k) // s + 1 for d, k, s in zip(x_shape[2:], kernel, stride))


def stem_geometry_supported(kernel, stride, padding) -> bool:
    """The V2 stem's geometry (embed.v2_stem_geometry): kernel stride + 1, padding 1, a power-of-two column stride."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return kh == sh + 1 and kw == sw + 1 and ph == pw == 1 and sw >= 2 and sw & (sw - 1) == 0


def stem_weights(weight, dtype):
    """(WM, WE) of stem_fwd_kernel from a conv weight [N, C, KH, KW]: the window rows' last KW - 1 columns and their
    first column, each transposed to [rows * taps, N], contiguous, in dtype."""
    n = weight.shape[0]
    main = weight[..., 1:].reshape(n, -1).t().to(dtype).contiguous()
    first = weight[..., 0].reshape(n, -1).t().to(dtype).contiguous()
    return main, first


def check_stem_args(x, wm, we, bias, ln_w, ln_b, kernel, stride):
    if x.dim() != 4:
        raise ValueError(f"stem_conv_norm_silu: x must be [B, C, H, W], got {tuple(x.shape)}")
    if not stem_geometry_supported(kernel, stride, (1, 1)):
        raise ValueError(f"stem_conv_norm_silu: kernel {tuple(kernel)} and stride {tuple(stride)} are not the V2 "
                         "stem's geometry (kernel = stride + 1, padding 1, a power-of-two column stride)")
    rows = x.shape[1] * kernel[0]
    n = wm.shape[-1]
    for name, t, shape in (("wm", wm, (rows * (kernel[1] - 1), n)), ("we", we, (rows, n))):
        if t.shape != shape or not t.is_contiguous():
            raise ValueError(f"stem_conv_norm_silu: {name} must be contiguous {list(shape)} (stem_weights), "
                             f"got {tuple(t.shape)}")
        if t.dtype not in (torch.bfloat16, torch.float32) or t.dtype != wm.dtype:
            raise ValueError(f"stem_conv_norm_silu: wm and we must share the compute dtype, bf16 or fp32; got "
                             f"{wm.dtype} and {we.dtype}")
    for name, t in (("bias", bias), ("ln_w", ln_w), ("ln_b", ln_b)):
        if t.shape != (n,) or not t.is_contiguous():
            raise ValueError(f"stem_conv_norm_silu: {name} must be a contiguous [{n}] vector, got {tuple(t.shape)}")
    if min(stem_out_size(x.shape, kernel, stride)) < 1:
        raise ValueError(f"stem_conv_norm_silu: a {tuple(x.shape[2:])} input is smaller than the {tuple(kernel)} "
                         "kernel with padding 1")


@custom_op("vig::stem_conv_norm_silu", mutates_args=())
def stem_conv_norm_silu(x: Tensor, wm: Tensor, we: Tensor, bias: Tensor, ln_w: Tensor, ln_b: Tensor,
                        kernel: list[int], stride: list[int], eps: float) -> Tensor:
    """silu(layer_norm(conv2d(x, w, padding=1) + bias) * ln_w + ln_b) over the output channels -> [B, Ho, Wo, N]
    (NHWC) in wm's dtype; (wm, we) = stem_weights(w, dtype)."""
    check_stem_args(x, wm, we, bias, ln_w, ln_b, kernel, stride)
    from vig.layers.fused.stem import stem_forward
    return stem_forward(x, wm, we, bias, ln_w, ln_b, kernel, stride, eps)


@stem_conv_norm_silu.register_fake
def _(x, wm, we, bias, ln_w, ln_b, kernel, stride, eps):
    check_stem_args(x, wm, we, bias, ln_w, ln_b, kernel, stride)
    return x.new_empty((x.shape[0], *stem_out_size(x.shape, kernel, stride), wm.shape[1]), dtype=wm.dtype)


def _flops(x_shape, wm_shape, we_shape, *args, out_shape=None, **kwargs):
    pixels = out_shape[0] * out_shape[1] * out_shape[2]
    return 2 * pixels * (wm_shape[0] + we_shape[0]) * wm_shape[1]


if torch.ops.vig.stem_conv_norm_silu not in flop_registry:
    register_flop_formula(torch.ops.vig.stem_conv_norm_silu)(_flops)
