"""checkpoint_filter_fn strips the wrappers DDP and torch.compile add to key names, nested in either order
(a compiled model wrapped in DDP saves 'module._orig_mod.' keys, DDP inside compile '_orig_mod.module.')."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers the models)
from vig.models.checkpoint import checkpoint_filter_fn


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_are_stripped(prefix):
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", depth=1, num_classes=3)
    sd = model.state_dict()
    out = checkpoint_filter_fn({"model": {prefix + k: v for k, v in sd.items()}}, model)
    assert list(out) == list(sd)
    assert all(torch.equal(out[k], sd[k]) for k in sd)
