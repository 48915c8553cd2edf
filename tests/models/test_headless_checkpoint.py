"""A backbone saved without its classifier (timm's num_classes=0): convert keeps it headless under the strict load,
the dense backbones load it, and eval / predict say there is no head instead of scoring features as classes."""
import os

import pytest
import timm
import torch

import vig.models  # noqa: F401  registers the vig_* models
from vig.cli import main
from vig.models.checkpoint import checkpoint_build_kwargs, load_checkpoint_file


@pytest.fixture(scope="module", params=["vig_tiny", "vig_h_tiny"])
def headless(request, tmp_path_factory):
    torch.manual_seed(0)
    sd = timm.create_model(request.param, num_classes=0).state_dict()
    path = tmp_path_factory.mktemp("bb") / f"{request.param}_backbone.pth"
    torch.save(sd, str(path))
    return request.param, str(path), sd


def test_build_kwargs_read_a_missing_head_as_num_classes_0(headless):
    name, path, _ = headless
    assert checkpoint_build_kwargs(load_checkpoint_file(path), name)["num_classes"] == 0


@pytest.mark.parametrize("lost", ["head.weight", "head.bias"])
def test_a_head_with_one_tensor_missing_is_not_read_as_headless(lost):
    sd = timm.create_model("vig_tiny", num_classes=3).state_dict()
    sd.pop(lost)
    assert checkpoint_build_kwargs(sd, "vig_tiny").get("num_classes") != 0  # a damaged head, not a backbone


def test_convert_keeps_a_backbone_headless(headless, tmp_path, capsys):
    name, path, sd = headless
    out = tmp_path / "bb.safetensors"
    assert main(["convert", path, str(out), "--model", name]) == 0
    assert "strict load OK" in capsys.readouterr().out
    loaded = load_checkpoint_file(out)
    assert sorted(loaded) == sorted(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_dense_backbone_loads_a_headless_checkpoint(headless):
    from vig.downstream.backbone import build_timm_backbone
    name, path, _ = headless
    body, _ = build_timm_backbone(name, pretrained=path)
    assert body is not None


def test_predict_and_eval_say_there_is_no_head(headless, tmp_path, capsys):
    from PIL import Image
    name, path, _ = headless
    for c in ("a", "b"):
        os.makedirs(tmp_path / "imgs" / c)
        Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "imgs" / c / "0.png")
    image = str(tmp_path / "imgs" / "a" / "0.png")
    rc = main(["predict", image, "--model", name, "--checkpoint", path])
    err = capsys.readouterr().err
    assert rc == 2 and "no classifier head" in err and "vig train --pretrained" in err
    rc = main(["eval", "--model", name, "--checkpoint", path, "--data", str(tmp_path / "imgs"), "--device", "cpu",
               "--img-size", "32"])
    err = capsys.readouterr().err
    assert rc == 2 and "no classifier head" in err


def test_predict_num_classes_0_is_refused_as_a_flag_not_blamed_on_a_file(tmp_path, capsys):
    from PIL import Image
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(image)
    rc = main(["predict", str(image), "--model", "vig_tiny", "--num-classes", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--num-classes must be at least 1" in err and "backbone saved" not in err
