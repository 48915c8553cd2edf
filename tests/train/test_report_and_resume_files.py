"""What a resumed run reads and rewrites: a repeated epoch or step replaces the old row in metrics.csv / steps.csv
(the run that died logged it first), and --resume takes only a file with the training checkpoint's format tag."""
import csv

import pytest
import torch

from vig.errors import UsageError
from vig.train import checkpointing
from vig.train.report import MetricsLog


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resumed_epoch_replaces_its_row_and_drops_later_ones(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for e in range(4):
        log.add({"epoch": e, "train_loss": 1.0 - e / 10})
    # resumed from the epoch-1 checkpoint: epochs 2 and 3 of the dead run are gone, epoch 2 is redone
    log = MetricsLog(tmp_path, tensorboard=False)
    log.add({"epoch": 2, "train_loss": 0.5})
    rows = _rows(tmp_path / "metrics.csv")
    assert [(r["epoch"], r["train_loss"]) for r in rows] == [("0", "1.0"), ("1", "0.9"), ("2", "0.5")]


def test_a_repeated_step_keeps_its_latest_point(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.add_step(0.1, 10, 2.0, 1e-3)
    log.add_step(0.2, 20, 1.5, 1e-3)
    log.add_step(0.1, 10, 1.8, 1e-3)  # the resumed run passes step 10 again
    log.write_steps()
    assert [(r["step"], r["loss"]) for r in _rows(tmp_path / "steps.csv")] == [("10", "1.8"), ("20", "1.5")]


def test_a_file_that_is_not_a_training_checkpoint_is_refused_for_resume(tmp_path):
    path = tmp_path / "last.pth"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, path)  # a dict, but no vig training format tag
    with pytest.raises(UsageError, match="is not a vig training checkpoint"):
        checkpointing.load_training_checkpoint(path)
    checkpointing.atomic_torch_save({"format": checkpointing.FORMAT, "epoch": 3}, path)
    assert checkpointing.load_training_checkpoint(path)["epoch"] == 3
