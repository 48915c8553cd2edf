"""--layer-decay on plain ViG: every parameter's lr scale and weight decay against a hand-written table.

Layer ids run in forward order: the stem (pos_embed, patch_embed) 0, block i at i + 1, the final norm with the last
block (timm's merge-with-previous, as its ViTs do), the head last; lr scale = layer_decay ** (last id - id). Weight
decay: none on 1-D params and biases, nor (default recipe) on no_weight_decay()'s pos_embed; the paper recipe
decays pos_embed, as the official code does."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers the models)
from vig.train import setup
from vig.train.config import TrainConfig

DEPTH, DECAY, WD = 2, 0.5, 0.05


def expected_layer(name):
    if name == "pos_embed" or name.startswith("patch_embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    if name.startswith("norm."):
        return DEPTH  # the last block's group
    assert name.startswith("head."), name
    return DEPTH + 1


def expected_wd(name, p, recipe):
    if p.ndim <= 1 or name.endswith(".bias"):
        return 0.0
    if name == "pos_embed" and recipe == "default":
        return 0.0
    return WD


def _groups_by_name(model, opt):
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for g in opt.param_groups:
        for p in g["params"]:
            out[names[id(p)]] = g
    assert set(out) == set(names.values())  # every parameter is optimised, once
    return out


@pytest.mark.parametrize("recipe", ["default", "paper"])
def test_every_parameter_gets_its_layers_lr_scale_and_decay(recipe):
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", depth=DEPTH, num_classes=5)
    cfg = TrainConfig(recipe=recipe, layer_decay=DECAY, weight_decay=WD)
    opt = setup.build_optimizer(model, cfg, 1e-3)
    for name, g in _groups_by_name(model, opt).items():
        p = dict(model.named_parameters())[name]
        assert g["lr_scale"] == pytest.approx(DECAY ** (DEPTH + 1 - expected_layer(name))), name
        assert g["weight_decay"] == expected_wd(name, p, recipe), name


def test_the_scheduler_applies_the_scales():
    """The lr each group trains with, after warmup: the schedule's lr times the group's scale (timm applies lr_scale
    in the scheduler, so a group's 'lr' alone would not show it)."""
    model = timm.create_model("vig_tiny", depth=DEPTH, num_classes=5)
    opt = setup.build_optimizer(model, TrainConfig(layer_decay=DECAY, weight_decay=WD), 1e-3)
    cfg = TrainConfig(epochs=4, warmup_epochs=1, base_lr=1e-3, min_lr=1e-5, warmup_lr=1e-7)
    sched = setup.build_scheduler(opt, cfg, 1.0, 10, log=lambda *a: None)
    sched.step_update(10)  # the first step after warmup: the peak lr
    lrs = {name: g["lr"] for name, g in _groups_by_name(model, opt).items()}
    assert lrs["head.weight"] == pytest.approx(1e-3)
    assert lrs["blocks.1.attn.o_proj.weight"] == pytest.approx(1e-3 * DECAY)
    assert lrs["blocks.0.mlp.down_proj.weight"] == pytest.approx(1e-3 * DECAY ** 2)
    assert lrs["pos_embed"] == pytest.approx(1e-3 * DECAY ** 3)
