"""`vig train --pretrained` from a backbone saved without its head (num_classes=0, reset_classifier(0)): timm's
create_model(pretrained=True, num_classes=N) takes such a file with a fresh head, and so does fine-tuning."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  registers the models
from vig.train.setup import load_for_finetune


@pytest.mark.parametrize("name, kwargs", [("vig_tiny", dict(depth=1)), ("vig_h_tiny", dict(depths=(1,), dims=(32,),
                                                                                              num_heads=(1,)))])
def test_a_headless_backbone_gets_a_fresh_head(tmp_path, name, kwargs):
    backbone = timm.create_model(name, num_classes=0, **kwargs)
    path = tmp_path / "backbone.pth"
    torch.save(backbone.state_dict(), path)
    model = timm.create_model(name, num_classes=3, **kwargs)
    said = []
    skipped = load_for_finetune(model, str(path), log=said.append)
    assert said[-1].endswith("it holds no head, so a new one for 3 classes")
    assert skipped == sorted(k for k in model.state_dict() if "head." in k)
    loaded = model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in backbone.state_dict().items())


def test_a_head_missing_only_its_bias_is_still_refused(tmp_path):
    from vig.models.checkpoint import CheckpointError
    sd = timm.create_model("vig_tiny", depth=1, num_classes=3).state_dict()
    del sd["head.bias"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing 1 key.*head.bias"):
        load_for_finetune(timm.create_model("vig_tiny", depth=1, num_classes=3), str(tmp_path / "partial.pth"),
                          log=lambda _: None)
