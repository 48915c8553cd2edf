"""A det checkpoint is refused by the seg loader and the other way round, with a message naming the task."""
import pytest
import torch

from vig.downstream.detection import load_detector
from vig.downstream.segmentation import load_segmentor
from vig.errors import UsageError


@pytest.mark.parametrize("task, loader, kind", [("seg", load_detector, "detection"), ("det", load_segmentor, "segmentation")])
def test_other_task_checkpoint_is_refused(tmp_path, task, loader, kind):
    path = tmp_path / "last.pth"
    torch.save({"model": {}, "config": {"task": task}}, path)
    with pytest.raises(UsageError, match=rf"is a {task} checkpoint, not a {kind} one"):
        loader(str(path), "cpu")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(UsageError, match="checkpoint not found"):
        load_detector(str(tmp_path / "nope.pth"), "cpu")
