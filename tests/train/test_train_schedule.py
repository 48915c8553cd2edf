"""The lr schedule and what the logs call the lr: warmup plus cosine span exactly --epochs and end at min_lr
(timm's warmup_prefix alone would add the warmup on top and stop the run part-way down the cosine), a warmup as long
as the run is cut with a warning, and with layer decay the logged lr is the head's, not the stem's."""
import pytest
import torch

from vig.train import setup
from vig.train.config import TrainConfig


def _sched(cfg, steps_per_epoch=10, scale=1.0, log=print):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.base_lr)
    return setup.build_scheduler(opt, cfg, scale, steps_per_epoch, log=log)


@pytest.mark.parametrize("epochs, warmup", [(2, 0.2), (10, 2), (300, 20)])
def test_cosine_ends_at_min_lr_on_the_last_update(epochs, warmup):
    cfg = TrainConfig(epochs=epochs, warmup_epochs=warmup, base_lr=1e-3, min_lr=1e-5, warmup_lr=1e-7)
    sched, steps = _sched(cfg), epochs * 10
    lrs = [sched._get_lr(t)[0] for t in range(steps + 1)]
    assert lrs[steps] == pytest.approx(1e-5, rel=1e-6)
    assert (lrs[steps - 1] - 1e-5) / (1e-3 - 1e-5) < 0.01  # the run's last update is at the bottom of the cosine
    assert max(lrs) == pytest.approx(1e-3, rel=1e-3)  # base lr is reached right after the warmup
    assert lrs[int(warmup * 10)] == pytest.approx(1e-3, rel=1e-3)


def test_warmup_as_long_as_the_run_is_cut_with_a_warning():
    said = []
    cfg = TrainConfig(epochs=1, warmup_epochs=5, base_lr=1e-3, min_lr=1e-5)
    sched = _sched(cfg, log=said.append)
    assert said and "--warmup-epochs 5" in said[0] and "0.1 epochs" in said[0]
    lrs = [sched._get_lr(t)[0] for t in range(11)]
    assert lrs[1] == pytest.approx(1e-3, rel=1e-3) and lrs[10] == pytest.approx(1e-5, rel=1e-6)


def test_logged_lr_is_the_head_groups_under_layer_decay():
    import timm
    cfg = TrainConfig(model="vig_fmnist", layer_decay=0.5, base_lr=1e-3)
    model = timm.create_model("vig_fmnist")
    opt = setup.build_optimizer(model, cfg, 1e-3)
    setup.build_scheduler(opt, TrainConfig(epochs=2, warmup_epochs=0, base_lr=1e-3), 1.0, 10).step_update(0)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs[0] < lrs[-1]  # layer decay made the groups differ
    assert setup.current_lr(opt) == pytest.approx(1e-3)


def test_recipe_line_names_what_a_recipe_turns_on():
    """A folder run's recipe turns on mixup, RandAugment and EMA that no flag named: the log says so."""
    import timm

    import vig.models  # noqa: F401
    from vig.train.config import resolve
    from vig.train.engine import recipe_line
    cfg = resolve({"data": "/some/folder", "model": "vig_small", "recipe": "paper", "output": "/tmp/o"})
    line = recipe_line(cfg, timm.create_model("vig_small"))
    for phrase in ("recipe paper", "mixup 0.8 / cutmix 1", "augment rand-m9-mstd0.5-inc1", "random erasing 0.25",
                   "drop path 0.2", "EMA 0.9999", "smoothing 0.1"):
        assert phrase in line, line
    plain = recipe_line(resolve({"data": "default", "output": "/tmp/o"}), timm.create_model("vig_fmnist"))
    assert "mixup" not in plain and "no EMA" in plain, plain


def test_recipe_line_gives_the_warmup_the_schedule_runs():
    """A warmup cut to a tenth of a short run is the one the log's recipe line names, not the flag's."""
    import timm

    import vig.models  # noqa: F401
    from vig.train.config import resolve
    from vig.train.engine import recipe_line
    cfg = resolve({"data": "default", "output": "/tmp/o", "epochs": 2, "warmup_epochs": 5})
    assert setup.warmup_epochs_used(cfg) == pytest.approx(0.2)
    assert "warmup 0.2 ep then cosine" in recipe_line(cfg, timm.create_model("vig_fmnist"))
    kept = resolve({"data": "default", "output": "/tmp/o", "epochs": 10, "warmup_epochs": 3})
    assert "warmup 3 ep then cosine" in recipe_line(kept, timm.create_model("vig_fmnist"))
