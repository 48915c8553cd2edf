"""`vig info`, `vig convert`, `vig predict`: output, and CLI errors as one line with exit code 2."""
import hashlib
import os
import subprocess
import sys

import pytest
import timm
import torch
from safetensors import safe_open

import vig.models  # noqa: F401  registers the vig_* models
from vig.cli import main
from vig.models.checkpoint import load_checkpoint_file


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    sd = timm.create_model("vig_tiny").state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "vig_t_official.pth"
    torch.save({"model": sd}, str(path))
    return str(path), sd


@pytest.fixture
def image(tmp_path):
    from PIL import Image
    path = tmp_path / "cat.png"
    torch.manual_seed(0)
    pixels = (torch.rand(90, 120, 3) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path)
    return str(path)


def _assert_one_line_error(rc, err, *needles):
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vig "), err
    for n in needles:
        assert n in lines[0], err


def test_info_vig_tiny(capsys):
    # 224 would be the honest GMACs check but costs seconds of CPU; at 64 the 8x8 stem and 4x4 grid scale exactly.
    assert main(["info", "vig_tiny", "--img-size", "64", "--features"]) == 0
    out = capsys.readouterr().out
    assert "params: 5,834,536 (5.83 M); 5,799,976 when built for 64x64" in out
    gmacs = float(out.split("GMACs @ 64x64: ")[1].split()[0])
    assert 0.07 < gmacs < 0.11  # ~1.110 * 16/196 conv+linear, plus the recurrence
    recurrence = 12 * 16 * 3 * 6 * 32 * 64 / 1e9  # blocks, tokens, heads, 6 K V MACs (ops/bigla/flops.py)
    assert f"bigla {recurrence:.3f}" in out
    assert "crop_pct=0.875" in out and "interpolation=bicubic" in out
    features = [line.split(":")[1].strip() for line in out.splitlines() if "reduction" in line]
    assert features and set(features) == {"channels 192, reduction 16"}


def test_info_works_for_timm_models(capsys):
    assert main(["info", "deit_tiny_patch16_224", "--img-size", "64"]) == 0
    assert "params: 5,717,416" in capsys.readouterr().out


def test_unknown_model_suggests_close_names(capsys):
    rc = main(["info", "vig_tinny"])
    _assert_one_line_error(rc, capsys.readouterr().err, "unknown model 'vig_tinny'", "vig_tiny")


def test_convert_writes_safetensors_with_metadata(tmp_path, tiny_ckpt, capsys):
    src, sd = tiny_ckpt
    out = tmp_path / "vig_tiny.safetensors"
    assert main(["convert", src, str(out), "--model", "vig_tiny"]) == 0
    assert "strict load OK" in capsys.readouterr().out
    loaded = load_checkpoint_file(out)
    assert sorted(loaded) == sorted(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["model"] == "vig_tiny"
    assert meta["source_sha256"] == hashlib.sha256(open(src, "rb").read()).hexdigest()
    model = timm.create_model("vig_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(out)))
    assert torch.equal(model.pos_embed.detach(), sd["pos_embed"])


def test_convert_failure_writes_nothing(tmp_path, tiny_ckpt, capsys):
    _, sd = tiny_ckpt
    partial = dict(sd)
    partial.pop("head.bias")
    src = tmp_path / "partial.pth"
    torch.save({"model": partial}, str(src))
    out = tmp_path / "out.safetensors"
    rc = main(["convert", str(src), str(out), "--model", "vig_tiny"])
    _assert_one_line_error(rc, capsys.readouterr().err, "missing 1 key(s): head.bias")
    assert sorted(os.listdir(tmp_path)) == ["partial.pth"]


def test_convert_corrupt_source(tmp_path, capsys):
    src = tmp_path / "bad.pth"
    src.write_bytes(b"PK\x03\x04 truncated zip")
    rc = main(["convert", str(src), str(tmp_path / "o.safetensors"), "--model", "vig_tiny"])
    _assert_one_line_error(rc, capsys.readouterr().err, "bad.pth")
    assert os.listdir(tmp_path) == ["bad.pth"]


def test_predict_prints_top5_with_imagenet_names(image, tiny_ckpt, capsys):
    src, _ = tiny_ckpt
    assert main(["predict", image, "--model", "vig_tiny", "--checkpoint", src, "--img-size", "64"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    names = timm.data.ImageNetInfo()
    for line in lines:
        pct, idx, label = line.split(maxsplit=2)
        assert pct.endswith("%") and label == names.index_to_description(int(idx))


def test_predict_other_num_classes_prints_indices(image, capsys):
    assert main(["predict", image, "--model", "vig_tiny", "--num-classes", "10", "--topk", "3", "--img-size", "32"]) == 0
    captured = capsys.readouterr()
    assert [line.split()[-2] for line in captured.out.strip().splitlines()] == ["class"] * 3
    assert "random weights" in captured.err


@pytest.mark.parametrize("content, needle", [(None, "image not found"), (b"not an image", "cannot read image")])
def test_predict_bad_image(tmp_path, capsys, content, needle):
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    rc = main(["predict", str(path), "--model", "vig_tiny"])
    _assert_one_line_error(rc, capsys.readouterr().err, needle)


def test_cli_error_in_subprocess_has_no_traceback(tmp_path):
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")  # the image is checked first; the model name is what fails
    proc = subprocess.run([sys.executable, "-m", "vig", "predict", str(tmp_path / "x.png"), "--model", "vig_tinny"],
                          capture_output=True, text=True, timeout=120)
    _assert_one_line_error(proc.returncode, proc.stderr, "vig_tiny")


def test_convert_refuses_existing_output_unless_overwrite(tmp_path, tiny_ckpt, capsys):
    src, _ = tiny_ckpt
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"keep me")
    rc = main(["convert", src, str(out), "--model", "vig_tiny"])
    _assert_one_line_error(rc, capsys.readouterr().err, "exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert main(["convert", src, str(out), "--model", "vig_tiny", "--overwrite"]) == 0
    assert load_checkpoint_file(out)


@pytest.mark.parametrize("where, message", [("folder", "is a folder"), ("missing", "does not exist")])
def test_convert_output_path_errors_are_one_line(tmp_path, tiny_ckpt, capsys, where, message):
    src, _ = tiny_ckpt
    out = tmp_path / "d.safetensors"
    if where == "folder":
        out.mkdir()
    else:
        out = tmp_path / "no" / "d.safetensors"
    rc = main(["convert", src, str(out), "--model", "vig_tiny"])
    _assert_one_line_error(rc, capsys.readouterr().err, message)
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".tmp"]


def test_info_mentions_the_bigla_formula_only_for_models_with_the_op(capsys):
    assert main(["info", "deit_tiny_patch16_224", "--img-size", "32"]) == 0
    assert "BiGLA" not in capsys.readouterr().out
    assert main(["info", "vig_fmnist"]) == 0
    assert "the BiGLA recurrence is counted by its registered formula" in capsys.readouterr().out


def _fmnist_run_checkpoint(path, num_classes, **meta):
    """A `vig train`-style best.safetensors of vig_fmnist: weights plus the run info stored beside them."""
    import json

    from vig.models.checkpoint import save_safetensors_atomic
    torch.manual_seed(0)
    model = timm.create_model("vig_fmnist", num_classes=num_classes, img_size=32)
    save_safetensors_atomic(model.state_dict(), path, {"classes": json.dumps(["class0", "class1", "class2"]),
                                                       **meta})
    return str(path)


def test_predict_uses_the_stored_size_and_validation_transform(tmp_path, image, monkeypatch, capsys):
    ckpt = _fmnist_run_checkpoint(tmp_path / "best.safetensors", 3, img_size="32", crop_pct="0.5",
                                  interpolation="bicubic")
    seen = []
    real = timm.data.create_transform
    monkeypatch.setattr(timm.data, "create_transform", lambda **kw: seen.append(kw) or real(**kw))
    assert main(["predict", image, "--model", "vig_fmnist", "--checkpoint", ckpt, "--topk", "1"]) == 0
    assert capsys.readouterr().out.split()[-1].startswith("class")
    (cfg,) = seen
    assert (cfg["input_size"], cfg["crop_pct"], cfg["interpolation"]) == ((1, 32, 32), 0.5, "bicubic")
    seen.clear()
    assert main(["predict", image, "--model", "vig_fmnist", "--checkpoint", ckpt, "--img-size", "28"]) == 0
    assert seen[0]["input_size"] == (1, 28, 28)  # the flag wins


def test_predict_help_names_the_stored_size(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "the model's, 224" not in capsys.readouterr().out


def test_predict_names_stored_classes_when_the_head_is_wider(tmp_path, image, capsys):
    """`vig train --num-classes 10` on 3 classes: labels 0..2 are the stored names, the other rows no class."""
    ckpt = _fmnist_run_checkpoint(tmp_path / "wide.safetensors", 10, img_size="32")
    assert main(["predict", image, "--model", "vig_fmnist", "--checkpoint", ckpt, "--topk", "10"]) == 0
    labels = {int(line.split()[1]): line.split(maxsplit=2)[2] for line in capsys.readouterr().out.splitlines()}
    assert [labels[i] for i in range(3)] == ["class0", "class1", "class2"]
    assert labels[7] == "class 7 (no training class)"


def test_info_notes_a_size_the_stem_does_not_read_whole(capsys):
    """vig_tiny at 230 px gave 224's GMACs with no word (its stem leaves 6 px unread; vig bench refuses 230)."""
    assert main(["info", "vig_tiny", "--img-size", "230"]) == 0
    assert "the stem leaves 6 px of this input unread" in capsys.readouterr().out
    assert main(["info", "vig_tiny", "--img-size", "232"]) == 0
    assert "unread" not in capsys.readouterr().out
