"""A grayscale checkpoint (vig_fmnist, in_chans=1) loaded into an RGB model listed the first conv's shapes only;
the error now says which input each side takes."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  registers the vig_* models
from vig.models.checkpoint import CheckpointError, load_pretrained


@pytest.fixture(scope="module")
def grayscale_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fmnist.pth"
    torch.save({"model": timm.create_model("vig_fmnist").state_dict()}, path)
    return str(path)


def test_input_channel_mismatch_is_named(grayscale_checkpoint):
    rgb = timm.create_model("vig_fmnist", in_chans=3)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(rgb, grayscale_checkpoint, model_name="vig_fmnist")
    msg = str(err.value)
    assert "patch_embed.proj.0.weight (model [64, 3, 5, 5], checkpoint [64, 1, 5, 5])" in msg
    assert "the checkpoint takes 1-channel input, the model 3 (in_chans=3)" in msg.lower()


def test_no_channel_hint_for_other_mismatches(grayscale_checkpoint):
    wider = timm.create_model("vig_fmnist", embed_dim=64, num_heads=2)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(wider, grayscale_checkpoint, model_name="vig_fmnist")
    assert "mis-shaped" in str(err.value) and "-channel input" not in str(err.value)
