"""Stems, downsampling and position-embedding resampling for ViG and ViG-H."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vig.layers.fused import compute_dtype, fused_enabled, fused_op_enabled, rewrite_enabled
from vig.layers.norms import LayerNorm2d


def v2_stem_geometry(patch_size: int):
    """(kernel, stride) of the first V2 conv; the second conv (k3 s2 p1) halves again.

    patch_size 16 gives the official k9/s8 stem; 4 gives k3/s2 (28x28 -> 7x7).
    """
    if patch_size < 4 or patch_size % 2:
        raise ValueError(f"patch_size must be an even number >= 4, got {patch_size}")
    return patch_size // 2 + 1, patch_size // 2


class V2PatchEmbed(nn.Module):
    """conv(k=p/2+1, s=p/2, p1) -> LN2d -> SiLU -> conv(k3, s2, p1) -> LN2d; returns NCHW."""

    def __init__(self, img_size=(224, 224), patch_size=16, in_chans=3, embed_dim=192):
        super().__init__()
        k, s = v2_stem_geometry(patch_size)
        self.patch_size, self.in_chans, self.kernel_size, self.stride = patch_size, in_chans, k, s
        self.img_size = tuple(img_size)
        # the release sizes its position grid with the nominal stride, img // patch_size
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        mid = embed_dim // 2
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, mid, k, stride=s, padding=1),
            LayerNorm2d(mid),
            nn.SiLU(),
            nn.Conv2d(mid, embed_dim, 3, stride=2, padding=1),
            LayerNorm2d(embed_dim),
        )

    @property
    def min_input_size(self) -> int:
        return self.kernel_size - 2  # one output pixel of the first conv, padding 1

    def unread_pixels(self, side: int) -> int:
        """Pixels at the bottom / right edge of a `side`-px input that no output depends on: the first conv's last
        window ends short of them (230 at patch 16: 6). Sizes that are multiples of the stride are read whole."""
        n = (side + 2 - self.kernel_size) // self.stride + 1
        return max(0, side - ((n - 1) * self.stride + self.kernel_size - 1))

    def feat_size(self, img_hw):
        h1 = [(d + 2 - self.kernel_size) // self.stride + 1 for d in img_hw]
        return tuple((d - 1) // 2 + 1 for d in h1)

    def forward(self, x):
        if fuses_stem_head(self.proj[0], x):
            # inference: the first conv, its norm and SiLU as one kernel, whose NHWC output the second conv takes
            return self.proj[3:](stem_head_fused(self.proj, x))
        if self.stride >= 4 and rewrite_enabled(x, "stem_gemm"):
            # before stem_cl: it returns channels-last too, so the second conv also runs NHWC. Only
            # timed at k9 s8; at stride 2 the unfolded columns would be 2.25x the image.
            return self.proj[1:](conv_as_gemm(self.proj[0], x))
        if fused_enabled(x, "stem_cl"):
            # channels-last input: cuDNN runs these convs in NHWC and would otherwise convert layouts
            # (two conversion kernels, 0.56 ms of a ViG-T bs-256 step on an H100), and LayerNorm2d's
            # permute becomes a free view. The output is channels-last, as LayerNorm2d's always was.
            x = x.contiguous(memory_format=torch.channels_last)
        return self.proj(x)


def fuses_stem_head(conv: nn.Conv2d, x) -> bool:
    """Inference on CUDA in bf16 (autocast or the model's dtype) or fp32, for the V2 geometry (stem_op's
    stem_geometry_supported: patch sizes 4, 8, 16, 32, ...): stem_head_fused (VIG_FUSED_OFF=stem_op: conv_as_gemm
    and the norm, as training runs them)."""
    if torch.is_grad_enabled() or x.dim() != 4 or not x.is_floating_point() or not fused_op_enabled(x, "stem_op"):
        return False
    from vig.layers.fused.stem_op import stem_geometry_supported
    plain = conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros" and conv.bias is not None
    return (plain and not isinstance(conv.padding, str)
            and stem_geometry_supported(conv.kernel_size, conv.stride, conv.padding)
            and compute_dtype(x) in (torch.bfloat16, torch.float32))


def stem_head_fused(proj, x):
    """proj[0:3] (conv, LayerNorm2d, SiLU) of x through vig::stem_conv_norm_silu: a channels-last [B, C, h, w] view
    of its NHWC output, in the compute dtype."""
    from vig.layers.fused.stem_op import stem_conv_norm_silu, stem_weights
    conv, norm = proj[0], proj[1]
    wm, we = stem_weights(conv.weight, compute_dtype(x))
    y = stem_conv_norm_silu(x, wm, we, conv.bias, norm.weight, norm.bias, list(conv.kernel_size), list(conv.stride),
                            norm.eps)
    return y.permute(0, 3, 1, 2)


def conv_as_gemm(conv: nn.Conv2d, x):
    """conv(x) as im2col + one batched GEMM; returns a channels-last [B, C_out, h, w] view of NHWC.

    For the stem's first conv (3 input channels, kernel p/2+1, stride p/2) cuDNN pads the image to 8
    channels and converts layouts: on an H100 (ViG-T, bf16, bs 256, compiled) that conv cost 0.84 ms
    of a 7.8 ms inference step, in four kernels (0.37, 2 x 0.11 and a 0.25 ms layout cast). Here the
    image is cast once to the compute dtype (unfold is not autocast-listed; the columns are 1.3x
    larger than the image), then unfolded and multiplied."""
    if (conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros"
            or isinstance(conv.padding, str)):
        raise ValueError(f"conv_as_gemm covers plain zero-padded convs with numeric padding, got {conv}")
    on = torch.is_autocast_enabled(x.device.type)
    dt = torch.get_autocast_dtype(x.device.type) if on else x.dtype
    x = x.to(dt)
    B, _, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    ho, wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    cols = F.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # [B, C*kh*kw, ho*wo]
    # one GEMM over every output pixel, its reduction zero-padded to a multiple of 8: 3 * 9 * 9 = 243 columns
    # left cuBLAS on an sm75-era align-1 kernel (H200, ViG-T 1024², bs 16: 0.15 ms of a 7.97 ms step)
    pad = -cols.shape[1] % 8
    a = F.pad(cols.transpose(1, 2), (0, pad)).reshape(B * ho * wo, cols.shape[1] + pad)
    w = F.pad(conv.weight.to(dt).flatten(1), (0, pad))
    y = a @ w.t()  # [B * ho * wo, C_out]: NHWC
    if conv.bias is not None:
        y = y + conv.bias.to(dt)
    return y.view(B, ho, wo, conv.out_channels).permute(0, 3, 1, 2)


def hier_stem(in_chans, dim):
    """ViG-H stem (keys patch_embed.0/2/5/7): two k3/s2 convs, LN2d, GELU; 224 -> 56."""
    return nn.Sequential(
        nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1),
        nn.Identity(),
        LayerNorm2d(dim // 2),
        nn.Identity(),
        nn.GELU(),
        nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1),
        nn.Identity(),
        LayerNorm2d(dim),
    )


def hier_downsample(dim, out_dim):
    """ViG-H downsample (keys downsample.1/3): conv k3 s2 p1 -> LN2d."""
    return nn.Sequential(nn.Identity(), nn.Conv2d(dim, out_dim, 3, stride=2, padding=1), nn.Identity(),
                         LayerNorm2d(out_dim))


def resample_pos_embed(pos_embed, new_hw, old_hw=None):
    """[1, h0*w0, C] -> [1, h*w, C]: bicubic in fp32, align_corners=False, no antialias (the release's rule)."""
    n, c = pos_embed.shape[1], pos_embed.shape[2]
    if old_hw is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"pos_embed with {n} tokens is not a square grid; pass old_hw")
        old_hw = (side, side)
    if tuple(old_hw) == tuple(new_hw):
        return pos_embed
    grid = pos_embed.reshape(1, old_hw[0], old_hw[1], c).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_hw), mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)
