"""Our own checkpoints (`vig train` / `vig convert`: they record model, classes, model_kwargs) through
timm.create_model(pretrained=True, pretrained_cfg_overlay=dict(file=...)): the trained head loads when num_classes
matches the recorded classes or is left out, and is replaced (timm's adaptation) when another num_classes is asked for.
Before, timm compared against the registry's 1000 classes: the head was silently re-initialised, or a bare size
mismatch came back."""
import json

import pytest
import timm
import torch

import vig.models  # noqa: F401  registers the vig_* models
from vig.models.checkpoint import save_safetensors_atomic

CLASSES = ["cat", "dog", "fox"]
BUILDS = {"vig_tiny": dict(depth=1), "vig_h_tiny": dict(depths=(1, 1, 1, 1))}  # the smallest configs of each path


def _head(model):
    head = model.get_classifier()
    return head.weight, head.bias


def _saved_run(tmp_path, name, fmt):
    """A tiny 3-class run's weights, written the way `vig train` writes best*.safetensors and last.pth."""
    kwargs = BUILDS[name]
    torch.manual_seed(0)
    sd = timm.create_model(name, num_classes=len(CLASSES), **kwargs).state_dict()
    path = tmp_path / ("best_ema.safetensors" if fmt == "safetensors" else "last.pth")
    if fmt == "safetensors":
        meta = {"model": name, "classes": json.dumps(CLASSES), "model_kwargs": json.dumps(kwargs), "img_size": 224}
        save_safetensors_atomic(sd, path, metadata=meta)
    else:
        torch.save({"model": sd, "classes": CLASSES, "config": {"model": name, "model_kwargs": kwargs}}, path)
    return str(path), sd


def _load(name, path, **kwargs):
    torch.manual_seed(123)  # a different init than the file's, so a re-initialised head shows
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **BUILDS[name], **kwargs)


@pytest.mark.parametrize("name", list(BUILDS))
@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_recorded_head_loads_with_num_classes_omitted_or_matching(tmp_path, name, fmt):
    path, sd = _saved_run(tmp_path, name, fmt)
    for kwargs in ({}, dict(num_classes=len(CLASSES))):
        model = _load(name, path, **kwargs)
        assert model.num_classes == len(CLASSES) and model.pretrained_cfg["num_classes"] == len(CLASSES)
        for key, value in model.state_dict().items():
            assert torch.equal(value, sd[key]), (kwargs, key)


@pytest.mark.parametrize("name", list(BUILDS))
def test_another_num_classes_gets_a_fresh_head_and_the_trained_body(tmp_path, name):
    path, sd = _saved_run(tmp_path, name, "safetensors")
    model = _load(name, path, num_classes=5)
    weight, bias = _head(model)
    assert weight.shape == (5, model.num_features) and bias.shape == (5,)
    heads = {k for k in sd if k.endswith(("head.weight", "head.bias"))}
    for key, value in model.state_dict().items():
        if key not in heads:
            assert torch.equal(value, sd[key]), key


def test_files_that_record_nothing_keep_the_registry_cfg(tmp_path):
    """Official releases record no classes: the cfg stays at ImageNet's 1000, so a 3-class model adapts as before."""
    torch.manual_seed(0)
    sd = timm.create_model("vig_tiny", depth=1).state_dict()
    path = tmp_path / "official.pth"
    torch.save({"model": sd}, path)
    model = _load("vig_tiny", str(path), num_classes=3)
    assert model.pretrained_cfg["num_classes"] == 1000 and _head(model)[0].shape == (3, 192)
    assert torch.equal(model.patch_embed.proj[0].weight, sd["patch_embed.proj.0.weight"])


def test_a_num_classes_in_the_overlay_wins(tmp_path):
    path, _ = _saved_run(tmp_path, "vig_tiny", "safetensors")
    model = timm.create_model("vig_tiny", pretrained=True, depth=1, num_classes=3,
                              pretrained_cfg_overlay=dict(file=path, num_classes=1000))
    assert model.pretrained_cfg["num_classes"] == 1000  # what the caller said; timm then adapts the head
