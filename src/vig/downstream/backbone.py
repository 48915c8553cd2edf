"""Dense-prediction backbones from timm classification models (ViG, ViG-H, or any timm model with
`forward_intermediates`): four feature maps at strides 4/8/16/32, plus an FPN wrapper that torchvision's
MaskRCNN accepts (it only needs `.out_channels` and an OrderedDict of maps).

Hierarchical models (ViG-H) give their four stages as they are. Plain models (ViG, ViT) give one stride-16
map; a ViTDet-style simple feature pyramid turns it into four (deconvolutions up, max-pool down).
Position embeddings are resized to the input on every forward by the model itself (`dynamic_img_size=True`).
"""
from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vig.layers.norms import LayerNorm2d

STRIDES = (4, 8, 16, 32)


class SimpleFeaturePyramid(nn.Module):
    """stride-16 map (C channels) -> strides 4/8/16/32 with C/4, C/2, C, C channels (ViTDet, Li et al. 2022)."""

    def __init__(self, dim: int):
        super().__init__()
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2))
        self.up2 = nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)
        self.down2 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.channels = [dim // 4, dim // 2, dim, dim]

    def forward(self, x):
        return [self.up4(x), self.up2(x), x, self.down2(x)]


def _stage_indices(feature_info):
    """Index (into feature_info / forward_intermediates) of the last feature at each stride 4/8/16/32,
    or None when the model is plain (one stride for every block)."""
    reductions = [f["reduction"] for f in feature_info]
    if len(set(reductions)) == 1:
        return None
    idx = []
    for s in STRIDES:
        hits = [i for i, r in enumerate(reductions) if r == s]
        if not hits:
            raise ValueError(f"backbone has no feature at stride {s} (its strides: {sorted(set(reductions))})")
        idx.append(hits[-1])
    return idx


class DenseBackbone(nn.Module):
    """Wraps a timm classification model (head pruned) and returns an OrderedDict '0'..'3' of NCHW maps at
    strides 4/8/16/32. The input is padded bottom/right to a multiple of 32 so every stride is exact."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
            raise ValueError(f"{type(model).__name__} has no forward_intermediates/feature_info (timm feature API)")
        info = list(model.feature_info)
        self.stage_idx = _stage_indices(info)
        self.model = model
        if self.stage_idx is None:  # plain: last block, then the simple feature pyramid
            if info[-1]["reduction"] != 16:
                raise ValueError(f"plain backbone must have stride 16, got {info[-1]['reduction']}")
            self.plain_idx = len(info) - 1
            self.sfp = SimpleFeaturePyramid(info[-1]["num_chs"])
            self.channels = self.sfp.channels
        else:
            self.sfp = None
            self.channels = [info[i]["num_chs"] for i in self.stage_idx]
        self.strides = list(STRIDES)

    @property
    def is_plain(self):
        return self.sfp is not None

    def forward(self, x):
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        if self.sfp is not None:
            feats = self.model.forward_intermediates(
                x, indices=[self.plain_idx], output_fmt="NCHW", intermediates_only=True)
            feats = self.sfp(feats[-1])
        else:
            feats = self.model.forward_intermediates(
                x, indices=self.stage_idx, output_fmt="NCHW", intermediates_only=True)
        return OrderedDict((str(i), f) for i, f in enumerate(feats))


class BackboneWithFPN(nn.Module):
    """body (DenseBackbone) + torchvision FPN + an extra max-pooled level 'pool'; `out_channels` for MaskRCNN."""

    def __init__(self, body: DenseBackbone, out_channels: int = 256):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def build_timm_backbone(name: str, pretrained: str | None = None, drop_path_rate: float | None = None,
                        grad_checkpointing: bool = False, **model_kwargs):
    """Create `name` as a full classification model, load `pretrained` into it strictly, then prune what
    dense prediction does not use (the head, and the final norm where timm's pruning drops it).
    Returns (DenseBackbone, skipped_keys): the checkpoint keys that were loaded but deliberately dropped."""
    import timm
    import vig.models  # noqa: F401  (registers vig_* with timm)

    kwargs = dict(model_kwargs)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if _is_plain_name(name):
        kwargs.setdefault("dynamic_img_size", True)
    if not timm.is_model(name):
        from vig.errors import UsageError
        raise UsageError(f"unknown backbone {name!r}; ViG backbones: {', '.join(dense_backbones())}")
    raw = None
    if pretrained:
        from vig.models.checkpoint import checkpoint_build_kwargs, load_checkpoint_file
        raw = load_checkpoint_file(pretrained)
        # a fine-tuned classifier (e.g. `vig train` on 2 classes) has its own head size; the head is pruned
        # below anyway, so build it to the checkpoint's size and still load every backbone weight strictly
        rows = checkpoint_build_kwargs(raw, name).get("num_classes")
        if rows is not None:
            kwargs.setdefault("num_classes", rows)
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as e:  # a --model-kwargs key the model does not take
        from vig.errors import UsageError
        raise UsageError(f"cannot build {name} with {model_kwargs}: {e}") from None
    if pretrained:
        from vig.models.checkpoint import load_pretrained
        load_pretrained(model, pretrained, strict=True, raw=raw)
    skipped = prune_for_dense(model)
    if grad_checkpointing:  # recompute block activations in backward: less memory at 1333x800, ~30% slower
        model.set_grad_checkpointing(True)
    try:
        body = DenseBackbone(model)
    except ValueError as e:  # e.g. vig_fmnist: a stride-8 model for 28x28 images, no stride-16 map to build on
        from vig.errors import UsageError
        raise UsageError(f"--backbone {name} cannot be used for detection/segmentation ({e}); "
                         f"supported: {', '.join(dense_backbones())}") from None
    return body, (skipped if pretrained else [])


def dense_backbones():
    """The registered ViG models with stride-4..32 features (vig_fmnist is a stride-8 MNIST-size model)."""
    import timm
    return [n for n in timm.list_models("vig*") if n != "vig_fmnist"]


def _is_plain_name(name):
    return not name.startswith("vig_h") and ("vit" in name or name.startswith("vig"))


def prune_for_dense(model: nn.Module):
    """Drop the classifier head (and any layer past the last feature) in place; returns the removed keys."""
    before = set(model.state_dict().keys())
    if hasattr(model, "prune_intermediate_layers"):
        n = len(model.feature_info)
        model.prune_intermediate_layers(indices=[n - 1], prune_norm=True, prune_head=True)
    else:
        model.reset_classifier(0)
    return sorted(before - set(model.state_dict().keys()))


def build_backbone_with_fpn(name, pretrained=None, out_channels=256, **kw):
    body, skipped = build_timm_backbone(name, pretrained, **kw)
    return BackboneWithFPN(body, out_channels), skipped
