"""ViG-H (hierarchical, channel-first): conv stem, 4 stages of VSSBlocks with GLA2D mixers (spec §2).

No position embedding: any input size works (the k3/s2/p1 convs take odd sizes too).
"""
from collections import OrderedDict
from typing import List, Optional, Union

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

from vig.layers import LayerNorm2d, VSSBlock, hier_downsample, hier_stem
from vig.models.hooks import has_hooks
from vig.models.cfgs import (check_image_input, checked_out_indices, intermediates_result, new_head,
                             pretrained_filter_fn, vig_cfg, with_recorded_num_classes)

__all__ = ["HierViG"]


class HierViG(nn.Module):
    def __init__(self, in_chans=3, num_classes=1000, global_pool="avg", dims=96, depths=(2, 2, 5, 2),
                 num_heads=(3, 6, 12, 24), expand_k=0.5, expand_v=1.0, mlp_hidden_multiple=32,
                 drop_rate=0.0, drop_path_rate=0.2, img_size=None, dynamic_img_size=False):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"HierViG: global_pool must be 'avg' or '', got {global_pool!r}")
        dims = [dims * 2 ** i for i in range(len(depths))] if isinstance(dims, int) else list(dims)
        if not len(dims) == len(depths) == len(num_heads):
            raise ValueError(f"HierViG: dims {dims}, depths {depths} and num_heads {num_heads} need equal lengths")
        self.num_classes, self.global_pool, self.in_chans = num_classes, global_pool, in_chans
        self.dims = dims
        self.num_features = self.head_hidden_size = dims[-1]
        # informational only, for timm API parity: no parameter depends on the input size, so any size works
        self.img_size, self.dynamic_img_size = img_size, dynamic_img_size
        self.grad_checkpointing = False

        self.patch_embed = hier_stem(in_chans, dims[0])
        dpr = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]
        layers = []
        for s, depth in enumerate(depths):
            first = sum(depths[:s])
            blocks = nn.Sequential(*[
                VSSBlock(dims[s], num_heads[s], expand_k, expand_v, mlp_hidden_multiple, drop_path=dpr[first + j])
                for j in range(depth)
            ])
            down = hier_downsample(dims[s], dims[s + 1]) if s + 1 < len(depths) else nn.Identity()
            layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=down)))
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Sequential(OrderedDict(
            norm=LayerNorm2d(dims[-1]),
            permute=nn.Identity(),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            head=nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity(),
        ))
        self.head_drop = nn.Dropout(drop_rate)
        self.feature_info = [dict(num_chs=d, reduction=4 * 2 ** s, module=f"layers.{s}.blocks")
                             for s, d in enumerate(dims)]
        self.init_weights()

    def init_weights(self):
        """Official init (spec §2.2): every Linear/Linear2d trunc-normal .02 (overriding the mixers' xavier
        except on the dw conv), LayerNorms 1/0, convs PyTorch default."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # --- timm API -------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self):
        return set()  # no position embedding; norms/biases are excluded by ndim in timm's optimizer factory

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        if coarse:
            return dict(stem=r"^patch_embed", blocks=[(r"^layers\.(\d+)", None), (r"^classifier\.norm", (99999,))])
        return dict(stem=r"^patch_embed", blocks=[
            (r"^layers\.(\d+)\.downsample", (99999,)),  # runs after the stage's blocks: joins the last one's group
            (r"^layers\.(\d+)\.blocks\.(\d+)", None),
            (r"^classifier\.norm", (99999,)),
        ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self):
        return self.classifier.head

    def set_input_size(self, img_size=None, **kwargs):
        """timm's hook for a new default input size. Nothing here is sized by it (no position table), so it is
        only recorded; the model already takes any size."""
        if img_size is not None:
            self.img_size = img_size

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"HierViG: global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.classifier.head = new_head(self, self.num_features, num_classes, trunc_normal_)

    # --- forward --------------------------------------------------------------------------
    def _stage(self, layer, x):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            # checkpoint_seq runs the blocks one by one, never the stage's __call__, whose hooks feature_info names
            if has_hooks(layer.blocks):
                return checkpoint(layer.blocks, x, use_reentrant=False)
            return checkpoint_seq(layer.blocks, x)
        return layer.blocks(x)

    def forward_features(self, x):
        """[B, 3, H, W] -> normed last-stage map [B, C3, H/32, W/32] (ceil)."""
        check_image_input(x, self.in_chans, 1, type(self).__name__)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer.downsample(self._stage(layer, x))
        return self.classifier.norm(x)

    def forward_head(self, x, pre_logits: bool = False):
        if self.global_pool == "avg":
            x = self.classifier.flatten(self.classifier.avgpool(x))
        x = self.head_drop(x)
        if pre_logits:
            return x
        if self.global_pool == "avg":
            return self.classifier.head(x)
        # unpooled: the head applies per position, and the map stays NCHW like forward_features' (a 1x1 conv head)
        return self.classifier.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x, indices: Optional[Union[int, List[int]]] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False, output_dict: bool = False):
        """Stage outputs (before each downsample) at `indices`, NCHW. norm=True applies the final norm
        to the last stage only (timm convention for hierarchical models). output_dict: timm's dict form."""
        if output_fmt != "NCHW":
            raise ValueError(f"HierViG: output_fmt must be 'NCHW', got {output_fmt!r}")
        check_image_input(x, self.in_chans, 1, type(self).__name__)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        last = len(self.layers) - 1
        x = self.patch_embed(x)
        layers = self.layers[:max_index + 1] if stop_early else self.layers
        intermediates = []
        for i, layer in enumerate(layers):
            x = self._stage(layer, x)
            if i in take_indices:
                intermediates.append(self.classifier.norm(x) if norm and i == last else x)
            if i < len(layers) - 1 or len(layers) == len(self.layers):
                x = layer.downsample(x)
        if intermediates_only:
            return intermediates_result(intermediates, None, output_dict)
        # stopped early: the last stage taken, unnormed (the final norm is the last stage's width)
        final = self.classifier.norm(x) if len(layers) == len(self.layers) else x
        return intermediates_result(intermediates, final, output_dict)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        if prune_norm:
            self.classifier.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


def _create_vig_h(variant, pretrained=False, **kwargs):
    stages = len(kwargs.get("depths", (2, 2, 5, 2)))
    out_indices = kwargs.pop("out_indices", None)
    if out_indices is None:
        out_indices = tuple(range(min(4, stages)))  # a model built with fewer stages has fewer outputs
    elif kwargs.get("features_only"):
        out_indices = checked_out_indices(out_indices, stages, variant, unit="stage", counted_by="len(depths)")
    kwargs = with_recorded_num_classes(variant, pretrained, kwargs)
    return build_model_with_cfg(
        HierViG, variant, pretrained,
        pretrained_filter_fn=pretrained_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


def _cfg(filename, top1):
    return vig_cfg(filename, top1, first_conv="patch_embed.0", classifier="classifier.head")


default_cfgs = generate_default_cfgs({
    "vig_h_tiny.in1k": _cfg("vig_h_t_82p8acc.pth", 82.8),   # paper top-1 82.8
    "vig_h_small.in1k": _cfg("vig_h_s_83p8acc.pth", 83.8),  # paper top-1 83.8
    "vig_h_base.in1k": _cfg("vig_h_b_84p2acc.pth", 84.2),   # paper top-1 84.2
})


@register_model
def vig_h_tiny(pretrained=False, **kwargs) -> HierViG:
    args = dict(dims=96, depths=(2, 2, 5, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2)
    return _create_vig_h("vig_h_tiny", pretrained, **dict(args, **kwargs))


@register_model
def vig_h_small(pretrained=False, **kwargs) -> HierViG:
    args = dict(dims=96, depths=(2, 2, 17, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3)
    return _create_vig_h("vig_h_small", pretrained, **dict(args, **kwargs))


@register_model
def vig_h_base(pretrained=False, **kwargs) -> HierViG:
    """ViG-H-B: dims 128..1024; its gMlp hidden sizes round to 32 (352/704/1376/2752), not 256."""
    args = dict(dims=128, depths=(2, 2, 17, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.6)
    return _create_vig_h("vig_h_base", pretrained, **dict(args, **kwargs))
