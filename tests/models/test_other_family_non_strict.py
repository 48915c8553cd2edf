"""A checkpoint of the other family refused even by a non-strict load: ViG-H's keys share almost nothing with plain
ViG's, so strict=False would otherwise 'load' nothing and leave the model at its random init without a word."""
import pytest
import timm
import torch

import vig  # noqa: F401  (registers the models)
from vig.models.checkpoint import CheckpointError, load_pretrained


def test_vig_h_weights_into_plain_vig_fail_without_strict(tmp_path):
    path = tmp_path / "h.pth"
    torch.save(timm.create_model("vig_h_tiny", depths=(1, 1, 1, 1)).state_dict(), path)
    model = timm.create_model("vig_tiny", depth=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pretrained(model, path, strict=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
