"""`vig eval` scores a checkpoint with the transform training validated with (img_size, crop_pct, interpolation
stored beside the weights), so it reproduces the logged score; flags still win, older files keep the model's."""
import csv
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import vig.models  # noqa: F401  registers the vig_* models
from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.errors import UsageError
from vig.models.checkpoint import save_safetensors_atomic, saved_run_info
from vig.train.evaluate import run_eval

CLASSES = ["c0", "c1", "c2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes of 40 px RGB noise: larger than the 28 px input, so crop_pct and resampling change the pixels."""
    root = tmp_path_factory.mktemp("ds3")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 60 * c, 50, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def _checkpoint(path, **meta):
    torch.manual_seed(0)
    model = timm.create_model("vig_fmnist", num_classes=3, in_chans=3)
    save_safetensors_atomic(model.state_dict(), path, {"classes": json.dumps(CLASSES), "img_size": "28", **meta})
    return str(path)


def _eval(ckpt, folder, tmp_path, **flags):
    return run_eval("vig_fmnist", ckpt, str(folder), batch_size=8, json_path=str(tmp_path / "e.json"), **flags)


def test_eval_defaults_to_the_stored_validation_transform(folder, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "best.safetensors", crop_pct="0.875", interpolation="bicubic")
    res = _eval(ckpt, folder, tmp_path)
    assert (res["crop_pct"], res["interpolation"]) == (0.875, "bicubic")
    assert "crop_pct 0.875 and bicubic interpolation, the validation transform stored in" in capsys.readouterr().out
    res = _eval(ckpt, folder, tmp_path, crop_pct=0.5, interpolation="nearest")  # flags win
    assert (res["crop_pct"], res["interpolation"]) == (0.5, "nearest")


def test_eval_of_a_checkpoint_without_them_keeps_the_model_defaults(folder, tmp_path):
    res = _eval(_checkpoint(tmp_path / "old.safetensors"), folder, tmp_path)
    assert (res["crop_pct"], res["interpolation"]) == (1.0, "bilinear")  # vig_fmnist's pretrained cfg


def test_last_pth_gives_the_validation_interpolation(tmp_path):
    """'random' is a training-only mode; validation ran bilinear, and eval refuses 'random'."""
    path = tmp_path / "last.pth"
    torch.save({"model": {}, "classes": CLASSES, "config": {"img_size": 28, "crop_pct": None,
                                                             "interpolation": "random"}}, path)
    info = saved_run_info(path)
    assert (info["img_size"], info["crop_pct"], info["interpolation"]) == (28, None, "bilinear")


def test_training_stores_the_transform_and_eval_reproduces_its_score(folder, tmp_path, vig_cli):
    out = tmp_path / "run"
    argv = tiny_args(out, batch=8) + ["--data", str(folder), "--model", "vig_fmnist", "--img-size", "28",
                                      "--crop-pct", "0.875", "--interpolation", "bicubic"]
    code, _, err = vig_cli(argv)
    assert code == 0, err
    info = saved_run_info(out / "best.safetensors")
    assert (info["crop_pct"], info["interpolation"]) == (0.875, "bicubic")
    logged = next(csv.DictReader(open(out / "metrics.csv")))
    code, _, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", str(out / "best.safetensors"),
                            "--data", str(folder), "--json", str(tmp_path / "e.json")])
    assert code == 0, err
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["top1"] == pytest.approx(float(logged["top1"]))
    assert res["loss"] == pytest.approx(float(logged["val_loss"]), rel=1e-5)


@pytest.mark.parametrize("limit", [0, -3])
def test_eval_refuses_a_limit_below_one(folder, tmp_path, vig_cli, limit):
    with pytest.raises(UsageError, match=f"--limit must be at least 1, got {limit}"):
        _eval(str(tmp_path / "never_read.safetensors"), folder, tmp_path, limit=limit)
    code, _, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", "x.safetensors", "--data", str(folder),
                            "--limit", str(limit)])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_one_channel_checkpoint_scores_a_colour_folder_as_gray(folder, tmp_path):
    """A Fashion-MNIST run (vig_fmnist's 1-channel stem) on an RGB ImageFolder: the model is built with the
    checkpoint's channels and the images read as gray. It was built with 3 channels and the strict load failed,
    --model-kwargs in_chans=1 included."""
    torch.manual_seed(0)
    model = timm.create_model("vig_fmnist", num_classes=3)
    assert model.patch_embed.proj[0].weight.shape[1] == 1
    ckpt = tmp_path / "gray.safetensors"
    save_safetensors_atomic(model.state_dict(), ckpt, {"classes": json.dumps(CLASSES), "img_size": "28"})
    res = _eval(str(ckpt), folder, tmp_path)
    assert res["input_size"][0] == 1 and res["images"] == 12
    with torch.no_grad():  # the score is the model's on the gray-converted images
        from vig.data.build import build_eval, model_data_config
        ds, _ = build_eval(str(folder), None, model_data_config(model, 28, "bilinear", 1.0))
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        assert x.shape[1] == 1
        top1 = (model.eval()(x).argmax(1) == torch.tensor([ds[i][1] for i in range(len(ds))])).float().mean() * 100
    assert res["top1"] == pytest.approx(float(top1))


def test_a_missing_data_folder_is_said_before_the_checkpoint_is_read(tmp_path):
    with pytest.raises(UsageError, match="--data .*nodir: no such folder"):
        run_eval(None, str(tmp_path / "missing.safetensors"), str(tmp_path / "nodir"))
