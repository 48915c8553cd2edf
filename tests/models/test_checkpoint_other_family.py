"""A checkpoint of the other model family (ViG-H into plain ViG and back) shares almost no key names, so no shape
check catches it; it must still fail with our short error naming the variant it looks like, not torch's list of
every key."""
import pytest
import timm
import torch

import vig  # noqa: F401  (registers the models)
from vig.models.checkpoint import CheckpointError


@pytest.mark.parametrize("saved, built", [("vig_h_tiny", "vig_tiny"), ("vig_tiny", "vig_h_tiny")])
def test_other_family_names_the_variant(tmp_path, saved, built):
    path = tmp_path / "w.pth"
    torch.save(timm.create_model(saved).state_dict(), path)
    with pytest.raises(CheckpointError, match=f"does not fit {built}.*looks like a {saved} checkpoint") as e:
        timm.create_model(built, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert len(str(e.value)) < 2000
