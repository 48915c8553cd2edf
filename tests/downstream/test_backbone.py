import pytest
import timm
import torch

import vig.models  # noqa: F401
from conftest import TINY
from vig.downstream.backbone import (BackboneWithFPN, DenseBackbone, build_backbone_with_fpn, build_timm_backbone,
                                     prune_for_dense)
from vig.downstream.engine import backbone_layer_ids, build_adamw
from vig.errors import UsageError

TINY_H = {"depths": (1, 1, 1, 1), "dims": 16, "num_heads": (1, 1, 1, 1)}


@pytest.mark.parametrize("size", [(64, 96), (50, 70)])
def test_plain_vig_simple_feature_pyramid_strides(size):
    body, skipped = build_timm_backbone("vig_tiny", **TINY)
    assert body.is_plain and body.channels == [8, 16, 32, 32] and skipped == []
    feats = body(torch.randn(1, 3, *size))
    hp, wp = [-(-s // 32) * 32 for s in size]  # padded to a multiple of 32
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(hp // s, wp // s) for s in (4, 8, 16, 32)]
    assert [f.shape[1] for f in feats.values()] == body.channels


def test_pos_embed_is_interpolated_and_trained_at_any_size():
    body, _ = build_timm_backbone("vig_tiny", **TINY)
    assert body.model.pos_embed.shape[1] == 196  # stored on the 224 grid
    out = body(torch.randn(2, 3, 96, 160))
    sum(f.square().mean() for f in out.values()).backward()
    assert body.model.pos_embed.grad is not None and body.model.pos_embed.grad.abs().sum() > 0
    assert body.sfp.up4[0].weight.grad is not None


def test_hierarchical_vig_h_four_stages_as_is():
    body, _ = build_timm_backbone("vig_h_tiny", **TINY_H)
    assert not body.is_plain and body.channels == [16, 32, 64, 128]
    feats = body(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(16, 16, 24), (32, 8, 12), (64, 4, 6), (128, 2, 3)]


def test_fpn_wrapper_gives_five_256_channel_levels():
    fpn, _ = build_backbone_with_fpn("vig_tiny", **TINY)
    assert isinstance(fpn, BackboneWithFPN) and fpn.out_channels == 256
    out = fpn(torch.randn(1, 3, 64, 64))
    assert list(out) == ["0", "1", "2", "3", "pool"] and all(v.shape[1] == 256 for v in out.values())
    assert [v.shape[-1] for v in out.values()] == [16, 8, 4, 2, 1]


@pytest.mark.parametrize("name,kw,head", [("vig_tiny", TINY, ["head.bias", "head.weight", "norm.weight"]),
                                          ("vig_h_tiny", TINY_H, ["classifier.head.bias", "classifier.head.weight",
                                                                  "classifier.norm.bias", "classifier.norm.weight"])])
def test_imagenet_checkpoint_loads_strictly_and_reports_skipped_keys(tmp_path, name, kw, head):
    src = timm.create_model(name, **kw)
    path = tmp_path / "in1k.pth"
    torch.save({"model": src.state_dict()}, path)  # the official release layout
    body, skipped = build_timm_backbone(name, str(path), **kw)
    assert skipped == head
    for k, v in body.model.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    if name != "vig_tiny":  # one failing case is enough (the error path builds every registered model)
        return
    sd = src.state_dict()
    del sd[next(k for k in sd if "blocks.0" in k)]
    torch.save(sd, path)
    with pytest.raises(UsageError, match="missing 1 key"):
        build_timm_backbone(name, str(path), **kw)


def test_layer_ids_and_layer_decay_groups():
    ids, n = backbone_layer_ids(["pos_embed", "patch_embed.proj.0.weight", "blocks.0.attn.x", "blocks.1.mlp.y"])
    assert n == 2 and ids == {"pos_embed": 0, "patch_embed.proj.0.weight": 0, "blocks.0.attn.x": 1,
                              "blocks.1.mlp.y": 2}
    names = ["patch_embed.0.weight", "layers.0.blocks.0.a", "layers.0.blocks.1.a", "layers.0.downsample.1.weight",
             "layers.1.blocks.0.a"]
    ids, n = backbone_layer_ids(names)
    assert n == 3 and [ids[k] for k in names] == [0, 1, 2, 2, 3]
    fpn, _ = build_backbone_with_fpn("vig_tiny", **TINY)
    model = torch.nn.ModuleDict({"backbone": fpn})
    opt = build_adamw(model, "backbone.body.", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales == [0.125, 0.25, 0.5, 1.0]  # stem 0.5^3, block 0 0.5^2, block 1 0.5, neck 1
    no_wd = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(fpn.body.model.pos_embed) in no_wd and id(fpn.fpn.inner_blocks[0][0].weight) not in no_wd
    with pytest.raises(UsageError, match="layer-wise lr decay needs"):
        backbone_layer_ids(["conv.weight"])


def test_models_without_the_feature_api_are_refused():
    with pytest.raises(ValueError, match="forward_intermediates"):
        DenseBackbone(torch.nn.Linear(2, 2))
    m = timm.create_model("vig_tiny", **TINY)
    assert prune_for_dense(m) == ["head.bias", "head.weight", "norm.weight"]
