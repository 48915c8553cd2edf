"""README, "## Training and evaluation": `--recipe paper` values (per-variant lr / weight decay of the official
configs, grad clip 5, EMA 0.9999, Mixup 0.8 / CutMix 1.0, smoothing 0.1, rand-m9-mstd0.5-inc1, RandomErasing 0.25,
bicubic, eval resize 256 -> crop 224), the default folder recipe (100 epochs,
RandAugment, Mixup / CutMix, EMA 0.9998 with warmup), and AdamW with no decay on 1-D params and biases."""
import pytest
import timm
import torch

import vig.models  # noqa: F401
from vig.train import config, setup

# README: ViG-T / B 1e-3 per 512 images, ViG-S 5e-4 with decay 0.1, ViG-H-T 8e-4, ViG-H-S / B 5e-4; decay 0.05 else
PAPER = {"vig_tiny": (1e-3, 0.05), "vig_base": (1e-3, 0.05), "vig_small": (5e-4, 0.1),
         "vig_h_tiny": (8e-4, 0.05), "vig_h_small": (5e-4, 0.05), "vig_h_base": (5e-4, 0.05)}


@pytest.mark.parametrize("model", list(PAPER))
def test_paper_recipe_per_variant_values(model):
    cfg = config.resolve({"output": "x", "model": model, "recipe": "paper", "data": "/data/imagenet"})
    lr, wd = PAPER[model]
    assert cfg.base_lr == lr and cfg.weight_decay == wd
    assert cfg.opt.lower() == "adamw"
    assert cfg.clip_grad == 5.0 and cfg.ema_decay == 0.9999 and not cfg.ema_warmup
    assert (cfg.mixup, cfg.cutmix, cfg.smoothing) == (0.8, 1.0, 0.1)
    assert cfg.auto_augment == "rand-m9-mstd0.5-inc1" and cfg.reprob == 0.25
    assert cfg.interpolation == "bicubic"
    assert round(224 / cfg.crop_pct) == 256  # eval resize 256 -> crop 224


def test_default_folder_recipe():
    cfg = config.resolve({"output": "x", "model": "vig_tiny", "data": "/data/imagenet"})
    assert cfg.epochs == 100 and cfg.auto_augment.startswith("rand-")
    assert cfg.mixup > 0 and cfg.cutmix > 0 and cfg.ema_decay == 0.9998 and cfg.ema_warmup


@pytest.mark.parametrize("recipe", ["paper", "default"])
def test_adamw_spares_1d_params_and_biases(recipe):
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", depth=1)
    cfg = config.resolve({"output": "x", "model": "vig_tiny", "recipe": recipe, "data": "/data/imagenet"})
    opt = setup.build_optimizer(model, cfg, 1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert set(wd) == {id(p) for p in params.values()}
    for name, p in params.items():
        if p.ndim <= 1 or name.endswith(".bias"):
            assert wd[id(p)] == 0, name
        elif name != "pos_embed":
            assert wd[id(p)] == cfg.weight_decay, name
    # the paper recipe decays pos_embed as the official code does; the default recipe spares no_weight_decay()
    assert wd[id(params["pos_embed"])] == (cfg.weight_decay if recipe == "paper" else 0)

