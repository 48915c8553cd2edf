"""Plain ViG (ViG-T/S/B): a V2 conv stem, abs. position embedding and 12 BiGLA blocks (spec §1).

Always resizes pos_embed to the actual token grid (bicubic, fp32), as the release does on every
forward, so any input size works; `dynamic_img_size` is accepted for timm API parity only.
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

from vig.layers import BiGLAttention, GLABlock, RMSNorm, V2PatchEmbed, resample_pos_embed
from vig.layers.blocks import add_norm
from vig.models.hooks import has_hooks
from vig.models.cfgs import (check_image_input, checked_out_indices, intermediates_result, new_head,
                             pretrained_filter_fn, vig_cfg, with_recorded_num_classes)

__all__ = ["ViG"]


class ViG(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, global_pool="avg",
                 embed_dim=192, depth=12, num_heads=3, expand_k=0.5, expand_v=1.0, mlp_hidden_multiple=256,
                 use_act_in_conv=False, use_out_act=False, drop_rate=0.0, pos_drop_rate=0.0,
                 drop_path_rate=0.0, dynamic_img_size=False, norm_eps=1e-6):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"ViG: global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes, self.global_pool, self.in_chans = num_classes, global_pool, in_chans
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 0
        self.dynamic_img_size = dynamic_img_size
        self.grad_checkpointing = False

        # attribute order fixes the state_dict order of the release: pos_embed, patch_embed, head, blocks, norm
        self.patch_embed = V2PatchEmbed(to_2tuple(img_size), patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linspace; python floats work on meta
        self.blocks = nn.ModuleList([
            GLABlock(embed_dim, num_heads, expand_k, expand_v, mlp_hidden_multiple, use_act_in_conv,
                     use_out_act, drop_path=dpr[i], norm_eps=norm_eps)
            for i in range(depth)
        ])
        self.norm = RMSNorm(embed_dim, eps=norm_eps)
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        self.init_weights()

    def init_weights(self):
        """Official init (spec §1.2): Linear N(0, .02), then small xavier in every mixer, pos_embed trunc-normal."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BiGLAttention):
                m.reset_parameters()
        trunc_normal_(self.pos_embed, std=0.02)

    # --- timm API -------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        # timm convention for ViTs; note the official recipe does decay pos_embed (spec §4)
        return {"pos_embed"}

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        return dict(stem=r"^pos_embed|^patch_embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"ViG: global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = new_head(self, self.embed_dim, num_classes, nn.init.normal_)

    def set_input_size(self, img_size=None, **kwargs):
        """Resample pos_embed (bicubic) to a new default grid, e.g. before fine-tuning at another size."""
        if img_size is None:
            return
        pe = self.patch_embed
        old = pe.grid_size
        pe.img_size = to_2tuple(img_size)
        pe.grid_size = (pe.img_size[0] // pe.patch_size, pe.img_size[1] // pe.patch_size)
        pe.num_patches = pe.grid_size[0] * pe.grid_size[1]
        with torch.no_grad():
            new = resample_pos_embed(self.pos_embed.data, pe.grid_size, old)
        self.pos_embed = nn.Parameter(new)

    # --- forward --------------------------------------------------------------------------
    def _embed(self, x) -> Tuple[torch.Tensor, Tuple[int, int]]:
        check_image_input(x, self.in_chans, self.patch_embed.min_input_size, type(self).__name__)
        x = self.patch_embed(x)
        hw = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        x = x + resample_pos_embed(self.pos_embed, hw, self.patch_embed.grid_size)
        return self.pos_drop(x), hw

    def _block(self, blk, x, hw):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(blk, x, hw, use_reentrant=False)
        return blk(x, hw)

    def _block_pending(self, blk, x, pending, hw):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(blk.forward_pending, x, pending, hw, use_reentrant=False)
        return blk.forward_pending(x, pending, hw)

    def forward_features(self, x):
        """[B, 3, H, W] -> normed tokens [B, N, C] (raster order)."""
        x, hw = self._embed(x)
        pending = None  # each block's last residual add is fused with the next norm on CUDA
        for blk in self.blocks:
            if _called_as_module(blk):
                x = self._block(blk, x if pending is None else x + pending, hw)
                pending = None
            else:
                x, pending = self._block_pending(blk, x, pending, hw)
        return self.norm(x) if pending is None else add_norm(x, pending, self.norm)[1]

    def forward_head(self, x, pre_logits: bool = False):
        if self.global_pool == "avg":
            x = x.mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x, indices: Optional[Union[int, List[int]]] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False, output_dict: bool = False,
                              return_prefix_tokens: bool = False):
        """Block outputs at `indices` (int: last n; list: those blocks), NCHW [B, C, h, w] or NLC. output_dict:
        timm's dict form (image_intermediates, and image_features unless intermediates_only). ViG has no prefix
        tokens, so return_prefix_tokens changes nothing, as in timm's ViTs without a class token."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"ViG: output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x, (h, w) = self._embed(x)
        blocks = self.blocks[:max_index + 1] if stop_early else self.blocks
        intermediates = []
        for i, blk in enumerate(blocks):
            x = self._block(blk, x, (h, w))
            if i in take_indices:
                intermediates.append(self.norm(x) if norm else x)
        if output_fmt == "NCHW":
            intermediates = [y.transpose(1, 2).reshape(y.shape[0], -1, h, w) for y in intermediates]
        return intermediates_result(intermediates, None if intermediates_only else self.norm(x), output_dict)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


def _called_as_module(blk) -> bool:
    """Whether a block must run through its __call__ (x -> x + branches) rather than the fused forward_pending: a
    block with hooks (feature_cls='hook', Grad-CAM), any hook registered globally, or a module that replaced it (a
    checkpoint or adapter wrapper)."""
    if type(blk) is not GLABlock or "forward" in vars(blk) or getattr(blk, "_compiled_call_impl", None) is not None:
        return True  # a wrapper or subclass, a forward patched on the instance, or blk.compile()
    return has_hooks(blk)


def default_out_indices(depth: int, n: int = 4):
    """Evenly spaced block indices ending at the last block: depth 12 -> (2, 5, 8, 11). Fewer than n blocks give
    each block once (depth 2 -> (0, 1)): a repeated index would list more feature_info entries than forward returns."""
    n = min(n, depth)
    return tuple(depth * (i + 1) // n - 1 for i in range(n))


def create_vig(variant, pretrained=False, **kwargs):
    """Build a registered ViG variant through timm (pretrained file loading, features_only via
    forward_intermediates). Small models registered elsewhere (e.g. vig_fmnist) should use this too."""
    depth = kwargs.get("depth", 12)
    out_indices = kwargs.pop("out_indices", None)
    if out_indices is None:
        out_indices = default_out_indices(depth)
    elif kwargs.get("features_only"):
        out_indices = checked_out_indices(out_indices, depth, variant)
    kwargs = with_recorded_num_classes(variant, pretrained, kwargs)
    return build_model_with_cfg(
        ViG, variant, pretrained,
        pretrained_filter_fn=pretrained_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


def _cfg(filename, top1):
    return vig_cfg(filename, top1, first_conv="patch_embed.proj.0", classifier="head", min_input_size=(3, 7, 7))


default_cfgs = generate_default_cfgs({
    "vig_tiny.in1k": _cfg("vig_t_77p2acc.pth", 77.2),   # paper top-1 77.2
    "vig_small.in1k": _cfg("vig_s_81p7acc.pth", 81.7),  # paper top-1 81.7
    "vig_base.in1k": _cfg("vig_b_82p6acc.pth", 82.6),   # paper top-1 82.6
})


@register_model
def vig_tiny(pretrained=False, **kwargs) -> ViG:
    """ViG-T: 5.83M params; the only variant with SiLU after the dw conv and on the mixer output."""
    args = dict(embed_dim=192, depth=12, num_heads=3, use_act_in_conv=True, use_out_act=True, drop_path_rate=0.0)
    return create_vig("vig_tiny", pretrained, **dict(args, **kwargs))


@register_model
def vig_small(pretrained=False, **kwargs) -> ViG:
    args = dict(embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.2)
    return create_vig("vig_small", pretrained, **dict(args, **kwargs))


@register_model
def vig_base(pretrained=False, **kwargs) -> ViG:
    args = dict(embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.5)
    return create_vig("vig_base", pretrained, **dict(args, **kwargs))
