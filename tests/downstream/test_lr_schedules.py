"""The downstream lr schedules and set_lr, against values worked out by hand: mmdet 1x (linear warmup, x0.1 at the
start of epochs 8 and 11) and mmseg poly (power 1, linear warmup)."""
import pytest
import torch

from vig.downstream.engine import build_adamw, poly_lr, set_lr, step_lr


def test_step_lr_warms_up_then_drops_at_the_start_of_each_milestone_epoch():
    kw = dict(iters_per_epoch=10, milestones=(8, 11), warmup_iters=5, warmup_ratio=1e-3)
    assert step_lr(2.0, 0, **kw) == pytest.approx(2.0 * 1e-3)
    assert step_lr(2.0, 2, **kw) == pytest.approx(2.0 * (1e-3 + (1 - 1e-3) * 2 / 5))
    assert step_lr(2.0, 5, **kw) == pytest.approx(2.0)  # warmup over
    assert step_lr(2.0, 79, **kw) == pytest.approx(2.0)  # last iteration of epoch 7
    assert step_lr(2.0, 80, **kw) == pytest.approx(0.2)  # first of epoch 8
    assert step_lr(2.0, 109, **kw) == pytest.approx(0.2)
    assert step_lr(2.0, 110, **kw) == pytest.approx(0.02)  # first of epoch 11


def test_poly_lr_is_linear_decay_with_a_floor_after_warmup():
    assert poly_lr(1.0, 0, 100, warmup_iters=0) == pytest.approx(1.0)
    assert poly_lr(1.0, 50, 100, warmup_iters=0) == pytest.approx(0.5)  # power 1: a straight line
    assert poly_lr(1.0, 75, 100, warmup_iters=0) == pytest.approx(0.25)
    assert poly_lr(1.0, 100, 100, warmup_iters=0) == pytest.approx(0.0)
    assert poly_lr(1.0, 50, 100, min_lr=0.2, warmup_iters=0) == pytest.approx(0.2 + 0.8 * 0.5)
    # warmup multiplies the poly value: ratio + (1 - ratio) * it / warmup
    assert poly_lr(1.0, 10, 100, warmup_iters=20, warmup_ratio=0.1) == pytest.approx(0.9 * (0.1 + 0.9 * 0.5))
    assert poly_lr(1.0, 0, 100, warmup_iters=20, warmup_ratio=0.1) == pytest.approx(0.1)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.blocks = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(2))
        self.head = torch.nn.Linear(2, 2)


def test_set_lr_keeps_each_groups_layer_decay_scale():
    opt = build_adamw(Net(), "backbone.", lr=1.0, weight_decay=0.05, layer_decay=0.5)
    set_lr(opt, 0.1)
    # 2 blocks: block i has layer id i+1 and scale 0.5 ** (3 - id); the head keeps the full lr
    scales = sorted({round(g["lr"] / 0.1, 6) for g in opt.param_groups})
    assert scales == [0.25, 0.5, 1.0]
    assert all(g["lr"] == pytest.approx(0.1 * g["lr_scale"]) for g in opt.param_groups)
