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


def test_same_widths_other_depth_names_the_variant_and_loads_partially_on_request(tmp_path):
    """ViG-H-T's checkpoint into ViG-H-S: every shape fits, 12 blocks are missing. It once reached torch's bare
    missing-keys error; an exact match of another variant is named, and a partial load stays one call away."""
    from vig.models.checkpoint import load_pretrained
    path = tmp_path / "h_t.pth"
    torch.save(timm.create_model("vig_h_tiny").state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit vig_h_small.*looks like a vig_h_tiny checkpoint"):
        timm.create_model("vig_h_small", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    missing, unexpected = load_pretrained(timm.create_model("vig_h_small"), path, strict=False)
    assert len(missing) == 12 * 16 and not unexpected  # stage 3 blocks 5-16, 16 tensors each
