"""A whole tiny run end to end: files a person sees, eval of our checkpoint, fine-tuning, NaN handling."""
import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.data.idx import FIXTURE_DIR, load_split


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from vig.cli import main
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(tiny_args(out, "--lr", "3e-3", "--warmup-epochs", "0", epochs=2, limit=256)) == 0
    return out


def test_run_writes_everything(finished_run, capsys):
    out = finished_run
    for name in ("config.yaml", "last.pth", "best.safetensors", "metrics.csv", "steps.csv", "curves.png",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["top1"]) <= 100 and float(r["train_loss"]) > 0 for r in rows)
    steps = list(csv.DictReader(open(out / "steps.csv")))
    assert [int(r["step"]) for r in steps] == list(range(1, 17))  # 8 batches/epoch -> a point every step
    ckpt = torch.load(out / "last.pth", weights_only=True)  # no pickled code: weights_only loads it
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 16 and set(ckpt) >= {"optimizer", "scheduler", "rng"}
    assert not list(out.glob(".*tmp*"))
    assert "inject_nan_steps" not in (out / "config.yaml").read_text()  # a test aid, not a user's setting


def test_training_learns(finished_run):
    first, last = list(csv.DictReader(open(finished_run / "metrics.csv")))
    assert float(last["train_loss"]) < float(first["train_loss"])
    assert float(last["top1"]) > 25.0  # 10 classes: chance is 10%; this run reaches ~40%


def test_eval_our_checkpoint_matches_training_metrics(finished_run, vig_cli, tmp_path):
    code, out, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", str(finished_run / "best.safetensors"),
                              "--data", "fashion-mnist", "--data-dir", str(FIXTURE_DIR), "--limit", "64",
                              "--json", str(tmp_path / "e.json")])
    assert code == 0, err
    assert "top-1 (%)" in out
    res = json.loads((tmp_path / "e.json").read_text())
    best = max(float(r["top1"]) for r in csv.DictReader(open(finished_run / "metrics.csv")))
    assert res["images"] == 64 and res["top1"] == pytest.approx(best, abs=1e-6)


def test_finetune_new_head_then_eval_on_folder(finished_run, vig_cli, tmp_path):
    """An ImageFolder of 3 classes, fine-tuned from 10-class weights saved the official way ({'model': sd} .pth):
    the head is replaced and reported, the gray stem adapted to RGB; then `vig eval` reads the folder's val/."""
    from safetensors.torch import load_file
    official_like = tmp_path / "official_like.pth"
    torch.save({"model": load_file(finished_run / "best.safetensors")}, official_like)
    x, y = load_split("train", FIXTURE_DIR)
    n_val = 0
    for split, rng in (("train", range(0, 60)), ("val", range(60, 90))):
        for i in rng:
            if y[i] < 3:
                path = tmp_path / "imgs" / split / f"c{y[i]}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.stack([x[i]] * 3, -1)).save(path)
                n_val += split == "val"
    argv = tiny_args(tmp_path / "ft", batch=4) + ["--data", str(tmp_path / "imgs"), "--model", "vig_fmnist",
                                                   "--img-size", "28", "--pretrained", str(official_like),
                                                   "--layer-decay", "0.75"]
    code, out, err = vig_cli(argv)
    assert code == 0, err
    assert "new head for 3 classes, skipped head.bias, head.weight" in out
    assert "adapting patch_embed.proj.0.weight from 1 to 3 input channels" in out
    code, out, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", str(tmp_path / "ft" / "last.pth"),
                              "--data", str(tmp_path / "imgs"), "--img-size", "28", "--json", str(tmp_path / "e.json")])
    assert code == 0, err
    assert json.loads((tmp_path / "e.json").read_text())["images"] == n_val

    # a val folder holding only some classes: labels follow the class names the checkpoint stored, not the folder's
    import shutil

    from vig.data.build import build_eval
    from vig.models.checkpoint import saved_run_info
    for c in ("c1", "c2"):
        shutil.copytree(tmp_path / "imgs" / "val" / c, tmp_path / "part" / c)
    for ckpt in ("best.safetensors", "last.pth"):
        info = saved_run_info(tmp_path / "ft" / ckpt)
        assert info["classes"] == ["c0", "c1", "c2"], ckpt
        code, out, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", str(tmp_path / "ft" / ckpt),
                                  "--data", str(tmp_path / "part"), "--img-size", "28", "--json",
                                  str(tmp_path / "part.json")])
        assert code == 0 and "warning" not in err, err
    dc = SimpleNamespace(input_size=(3, 28, 28), interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3,
                         crop_pct=1.0)
    ds, classes = build_eval(str(tmp_path / "part"), None, dc, classes=info["classes"])
    assert classes == ["c0", "c1", "c2"] and {label for _, label in ds.samples} == {1, 2}
    # the fine-tuned checkpoint in predict / convert / viz: its own head size and class names, no flags
    img = next((tmp_path / "part" / "c2").iterdir())
    code, out, err = vig_cli(["predict", str(img), "--model", "vig_fmnist", "--img-size", "28", "--topk", "3",
                              "--checkpoint", str(tmp_path / "ft" / "best.safetensors")])
    assert code == 0, err
    assert sorted(line.split()[-1] for line in out.strip().splitlines()) == ["c0", "c1", "c2"]
    conv = tmp_path / "ft_converted.safetensors"
    code, out, err = vig_cli(["convert", str(tmp_path / "ft" / "last.pth"), str(conv), "--model", "vig_fmnist"])
    assert code == 0, err
    assert saved_run_info(conv)["classes"] == ["c0", "c1", "c2"]
    trained = saved_run_info(tmp_path / "ft" / "last.pth")  # and the validation transform, for eval / predict
    assert trained["crop_pct"] is not None and trained["interpolation"]
    assert [saved_run_info(conv)[k] for k in ("crop_pct", "interpolation")] == [trained["crop_pct"],
                                                                                 trained["interpolation"]]
    from vig.viz.model import build_model
    assert build_model("vig_fmnist", str(conv), 28).num_classes == 3
    code, out, err = vig_cli(["viz", "attn", str(img), "--model", "vig_fmnist", "--checkpoint", str(conv),
                              "--img-size", "28", "--out", str(tmp_path / "viz")])
    assert code == 0, err

    bare = tmp_path / "bare.pth"  # weights without the class names: the folder's own order, with a warning
    torch.save(load_file(tmp_path / "ft" / "best.safetensors"), bare)
    code, out, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", str(bare), "--data",
                              str(tmp_path / "part"), "--img-size", "28", "--json", str(tmp_path / "bare.json")])
    assert code == 0 and "labels follow this folder's sorted class names" in err, err


def test_nan_loss_is_skipped_then_aborts(vig_cli, tmp_path):
    cfg = tmp_path / "nan.yaml"
    cfg.write_text("inject_nan_steps: [1]\n")
    code, out, err = vig_cli(tiny_args(tmp_path / "a", "--config", str(cfg)))
    assert code == 0, err
    assert "step 1: non-finite loss (nan), step skipped" in err
    assert list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))[0]["skipped_steps"] == "1"
    cfg.write_text("inject_nan_steps: [1, 2, 3]\nmax_bad_steps: 3\n")
    code, out, err = vig_cli(tiny_args(tmp_path / "b", "--config", str(cfg)))
    assert code == 2 and "Traceback" not in err
    assert "training aborted: the loss was NaN/Inf for 3 steps in a row" in err


def test_paper_recipe_smoke(vig_cli, tmp_path):
    """timm's RandAugment/RandomErasing/Mixup/CutMix/EMA path runs; EMA is evaluated beside the model."""
    code, out, err = vig_cli(tiny_args(tmp_path / "p", "--recipe", "paper", "--img-size", "32", "--epochs", "1",
                                       "--warmup-epochs", "0", batch=16, limit=32))
    assert code == 0, err
    row = list(csv.DictReader(open(tmp_path / "p" / "metrics.csv")))[0]
    assert row["ema_top1"] != "" and (tmp_path / "p" / "best_ema.safetensors").is_file()
    cfg = (tmp_path / "p" / "config.yaml").read_text()
    assert "auto_augment: rand-m9-mstd0.5-inc1" in cfg and "ema_decay: 0.9999" in cfg and "mixup: 0.8" in cfg


def test_failed_checkpoint_write_keeps_previous_file(finished_run, tmp_path, monkeypatch):
    from vig.train import checkpointing as ck
    target = tmp_path / "last.pth"
    target.write_bytes((finished_run / "last.pth").read_bytes())
    before = target.read_bytes()

    def dies_midway(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError):
        ck.atomic_torch_save({"x": 1}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left behind


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_runs(vig_cli, tmp_path, amp):
    code, out, err = vig_cli(tiny_args(tmp_path / amp, "--amp", amp, "--lr", "3e-3", batch=32, limit=64))
    assert code == 0, err
    assert f"amp {amp}" in out
    row = list(csv.DictReader(open(tmp_path / amp / "metrics.csv")))[0]
    assert np.isfinite(float(row["train_loss"])) and row["skipped_steps"] == "0"
    scaler = torch.load(tmp_path / amp / "last.pth", weights_only=True)["scaler"]
    assert bool(scaler) == (amp == "fp16")  # GradScaler state only when it is enabled (fp16)


def test_overwrite_replaces_only_run_files(vig_cli, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch,train_loss\n9,1.0\n")
    (out / "notes.txt").write_text("mine")
    code, _, err = vig_cli(tiny_args(out, "--overwrite", "--no-tensorboard", limit=64))
    assert code == 0, err
    assert [r["epoch"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["1"]
    assert (out / "notes.txt").read_text() == "mine"
