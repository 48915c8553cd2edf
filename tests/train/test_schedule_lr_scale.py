"""The lr schedule's end points scale like the peak lr (lr = base_lr x total batch / 512): warmup starts at
warmup_lr x scale and the cosine ends at min_lr x scale, as the official code scales them. And a warmup exactly as
long as the run is cut to a tenth of it, since it would leave no cosine."""
import pytest
import torch

from vig.train import setup
from vig.train.config import TrainConfig

SCALE = 0.25  # e.g. a total batch of 128 against the recipe's 512


def test_warmup_start_and_final_lr_scale_with_the_batch():
    cfg = TrainConfig(epochs=3, warmup_epochs=1, base_lr=1e-3, min_lr=1e-5, warmup_lr=1e-6)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.base_lr * SCALE)
    sched = setup.build_scheduler(opt, cfg, SCALE, 10, log=lambda *a: None)
    lrs = [sched._get_lr(t)[0] for t in range(31)]
    assert lrs[0] == pytest.approx(1e-6 * SCALE, rel=1e-6)
    assert lrs[10] == pytest.approx(1e-3 * SCALE, rel=1e-6)  # the peak, right after the 10 warmup steps
    assert lrs[30] == pytest.approx(1e-5 * SCALE, rel=1e-6)
    # linear warmup in between: halfway is the mean of the two ends
    assert lrs[5] == pytest.approx((1e-6 + 1e-3) * SCALE / 2, rel=1e-6)


def test_a_warmup_as_long_as_the_run_is_cut():
    said = []
    cfg = TrainConfig(epochs=2, warmup_epochs=2, base_lr=1e-3, min_lr=1e-5)
    assert setup.warmup_epochs_used(cfg) == pytest.approx(0.2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.base_lr)
    sched = setup.build_scheduler(opt, cfg, 1.0, 10, log=said.append)
    assert said and "--warmup-epochs 2" in said[0]
    assert sched._get_lr(2)[0] == pytest.approx(1e-3, rel=1e-6)
    assert setup.warmup_epochs_used(TrainConfig(epochs=2, warmup_epochs=1.9)) == 1.9  # shorter: kept
