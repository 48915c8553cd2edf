"""The default model vig_fmnist (1 channel, 28x28, 2 blocks) through the timm API and `vig info` / `vig predict`:
features_only asked for block indices that do not exist, and predict fed it an RGB image."""
import numpy as np
import pytest
import timm
import torch
from PIL import Image

import vig.models  # noqa: F401  registers the vig_* models
from vig.cli import main


def test_features_only_defaults_to_the_blocks_that_exist():
    m = timm.create_model("vig_fmnist", features_only=True).eval()
    assert m.feature_info.module_name() == ["blocks.0", "blocks.1"]
    with torch.no_grad():
        feats = m(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape) for f in feats] == [(2, 128, 4, 4)] * 2
    m = timm.create_model("vig_fmnist", features_only=True, out_indices=(1,))
    assert m.feature_info.channels() == [128]


def test_info_features(capsys):
    assert main(["info", "vig_fmnist", "--features"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1: channels 128, reduction 8" in out


@pytest.fixture(scope="module")
def fmnist_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fmnist.pth"
    torch.save({"model": timm.create_model("vig_fmnist").state_dict()}, str(path))
    return str(path)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_predict_converts_the_image_to_the_models_channels(tmp_path, capsys, fmnist_ckpt, mode):
    path = tmp_path / f"shirt_{mode}.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype(np.uint8)).convert(mode).save(path)
    assert main(["predict", str(path), "--model", "vig_fmnist", "--checkpoint", fmnist_ckpt, "--topk", "3"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3 and all("class " in line for line in lines)
    assert "in_chans" not in captured.err


def test_predict_and_convert_read_the_checkpoint_once(tmp_path, capsys, fmnist_ckpt, monkeypatch):
    """The head size, the input channels and the weights all come from one read of the file."""
    from vig.models import checkpoint
    reads = []
    real = checkpoint.load_checkpoint_file
    monkeypatch.setattr(checkpoint, "load_checkpoint_file",
                        lambda path, *args: reads.append(path) or real(path, *args))
    path = tmp_path / "shirt.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(path)
    assert main(["predict", str(path), "--model", "vig_fmnist", "--checkpoint", fmnist_ckpt, "--topk", "1"]) == 0
    assert reads == [fmnist_ckpt]
    reads.clear()
    assert main(["convert", fmnist_ckpt, str(tmp_path / "out.safetensors"), "--model", "vig_fmnist"]) == 0
    assert reads == [fmnist_ckpt]
