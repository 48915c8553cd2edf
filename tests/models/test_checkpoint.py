"""Checkpoint loading: official formats through timm, ViG-H legacy names, pos_embed resampling, bad files."""
import os

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import vig.models  # noqa: F401  registers the vig_* models
from vig.errors import UsageError
from vig.models.checkpoint import (CheckpointError, checkpoint_filter_fn, load_checkpoint_file, load_pretrained,
                                   rename_vig_h_legacy, save_safetensors_atomic)

SMALL = (1, 3, 32, 32)  # the models take any size; small keeps the forward cheap


class NeedsCodeExecution:
    """A custom class: unpickling it needs code, so weights_only loading must refuse the file."""


@pytest.fixture(scope="module")
def vig_tiny_ref():
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny").eval()
    x = torch.randn(SMALL)
    with torch.no_grad():
        return model, x, model(x)


@pytest.fixture(scope="module")
def vig_tiny_sd(vig_tiny_ref):
    return vig_tiny_ref[0].state_dict()


def _equal_sd(a, b):
    assert sorted(a) == sorted(b)  # safetensors stores keys sorted; loading goes by name
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _write(path, obj):
    if str(path).endswith(".safetensors"):
        save_file(obj, str(path))
    else:
        torch.save(obj, str(path))
    return str(path)


def test_checkpoint_error_is_usage_error():
    assert issubclass(CheckpointError, UsageError)


def test_safetensors_round_trip_with_metadata(tmp_path, vig_tiny_sd):
    path = tmp_path / "w.safetensors"
    save_safetensors_atomic(vig_tiny_sd, path, metadata={"model": "vig_tiny", "n": 3})
    _equal_sd(load_checkpoint_file(path), vig_tiny_sd)
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["model"] == "vig_tiny" and f.metadata()["n"] == "3"
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temp file left over


def test_save_failure_leaves_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors_atomic({"a": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_safetensors_atomic({"a": torch.zeros(2), "b": "not a tensor"}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_save_into_missing_folder_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="output folder does not exist"):
        save_safetensors_atomic({"a": torch.ones(2)}, tmp_path / "nope" / "w.safetensors")


@pytest.mark.parametrize("fmt", ["model", "model_ema", "state_dict", "bare", "ddp_prefix", "safetensors"])
def test_official_formats_load_strictly_through_timm(tmp_path, vig_tiny_ref, vig_tiny_sd, fmt):
    sd = dict(vig_tiny_sd)
    obj = {"ddp_prefix": {"model": {"module." + k: v for k, v in sd.items()}},
           "bare": sd, "safetensors": sd}.get(fmt, {fmt: sd})
    path = _write(tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pth"), obj)
    model = timm.create_model("vig_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    _equal_sd(model.state_dict(), vig_tiny_sd)
    _, x, want = vig_tiny_ref
    with torch.no_grad():
        assert torch.equal(model(x), want)


def test_ema_wins_when_both_present(tmp_path, vig_tiny_sd):
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in vig_tiny_sd.items()}
    path = _write(tmp_path / "ckpt.pth", {"model": vig_tiny_sd, "model_ema": ema})
    via_timm = timm.create_model("vig_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=path))
    ours = timm.create_model("vig_tiny")
    load_pretrained(ours, path)
    _equal_sd(via_timm.state_dict(), ema)
    _equal_sd(ours.state_dict(), ema)


def test_vig_h_legacy_rename_rules():
    legacy = ["patch_embed.proj.weight", "patch_embed.norm.bias", "layers.2.blocks.11.ln_1.weight",
              "layers.0.blocks.0.self_attention.qkv_proj.weight", "norm.weight", "head.bias",
              "layers.0.blocks.0.norm2.weight", "layers.1.downsample.3.weight"]
    want = ["patch_embed.0.weight", "patch_embed.2.bias", "layers.2.blocks.11.norm.weight",
            "layers.0.blocks.0.op.qkv_proj.weight", "classifier.norm.weight", "classifier.head.bias",
            "layers.0.blocks.0.norm2.weight", "layers.1.downsample.3.weight"]
    assert list(rename_vig_h_legacy({k: 0 for k in legacy})) == want


def test_plain_vig_keys_are_not_renamed(vig_tiny_sd):
    model = timm.create_model("vig_tiny")
    assert list(checkpoint_filter_fn({"model": vig_tiny_sd}, model)) == list(vig_tiny_sd)


def _to_legacy(key):
    for new, old in (("patch_embed.0.", "patch_embed.proj."), ("patch_embed.2.", "patch_embed.norm."),
                     ("classifier.norm.", "norm."), ("classifier.head.", "head.")):
        if key.startswith(new):
            return old + key[len(new):]
    return key.replace(".norm.", ".ln_1.").replace(".op.", ".self_attention.")


SHRUNK_VIG_H = dict(dims=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))  # same key layout, a fraction of the CPU


def test_vig_h_legacy_checkpoint_loads(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("vig_h_tiny", **SHRUNK_VIG_H).eval()
    legacy = {_to_legacy(k): v for k, v in ref.state_dict().items()}
    assert "layers.0.blocks.0.ln_1.weight" in legacy and "head.weight" in legacy
    path = _write(tmp_path / "vig_h_t.pth", {"model": legacy})
    model = timm.create_model("vig_h_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=path),
                              **SHRUNK_VIG_H).eval()
    _equal_sd(model.state_dict(), ref.state_dict())
    x = torch.randn(SMALL)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_pos_embed_resampled_to_model_grid(tmp_path, vig_tiny_ref, vig_tiny_sd):
    # A 224 checkpoint built for 64x96 must compute what the 224 model computes on 64x96 inputs.
    path = _write(tmp_path / "w.pth", {"model": vig_tiny_sd})
    model = timm.create_model("vig_tiny", img_size=(64, 96), pretrained=True,
                              pretrained_cfg_overlay=dict(file=path)).eval()
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    assert model.pos_embed.shape[1] == grid[0] * grid[1] != vig_tiny_sd["pos_embed"].shape[1]
    ours = timm.create_model("vig_tiny", img_size=(64, 96)).eval()
    load_pretrained(ours, path)
    assert torch.equal(ours.pos_embed, model.pos_embed)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), vig_tiny_ref[0](x), rtol=1e-5, atol=1e-6)


def test_wrong_variant_lists_misshaped_and_guesses(tmp_path):
    small = timm.create_model("vig_small").state_dict()
    path = _write(tmp_path / "vig_s.pth", {"model": small})
    with pytest.raises(CheckpointError) as e:
        load_pretrained(timm.create_model("vig_tiny"), path, model_name="vig_tiny")
    msg = str(e.value)
    assert "mis-shaped" in msg and "pos_embed (model [1, 196, 192], checkpoint [1, 196, 384])" in msg
    assert "looks like a vig_small checkpoint" in msg
    with pytest.raises(CheckpointError, match="mis-shaped.*looks like a vig_small checkpoint"):  # timm's route too
        timm.create_model("vig_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=path))


def test_missing_and_unexpected_keys_are_listed(tmp_path, vig_tiny_sd):
    sd = dict(vig_tiny_sd)
    sd.pop("norm.weight")
    sd["extra.weight"] = torch.ones(1)
    path = _write(tmp_path / "w.pth", sd)
    model = timm.create_model("vig_tiny")
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): norm.weight; unexpected 1 key\(s\): extra.weight"):
        load_pretrained(model, path)
    missing, unexpected = load_pretrained(model, path, strict=False)
    assert missing == ["norm.weight"] and unexpected == ["extra.weight"]


def _bad_file(tmp_path, kind):
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.randn(64, 64)}}, str(good))
    data = good.read_bytes()
    path = tmp_path / ("bad.safetensors" if kind.startswith("st_") else "bad.pth")
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt":
        path.write_bytes(b"\x00not a checkpoint" * 64)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "code_exec":
        torch.save({"model": {"w": torch.ones(1)}, "cfg": NeedsCodeExecution()}, str(path))
    elif kind == "no_tensors":
        torch.save({"epoch": 3, "config": "x"}, str(path))
    elif kind == "st_truncated":
        save_file({"w": torch.randn(64, 64)}, str(path))
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "csv":  # a run's metrics.csv passed by mistake
        path.write_text("epoch,train_loss,lr\n1,1.6,3.9e-08\n")
    elif kind == "text":
        path.write_text("hello world\n")
    elif kind == "missing":
        path = tmp_path / "absent.pth"
    return path


@pytest.mark.parametrize("kind, pattern", [
    ("truncated", "corrupt or truncated"), ("corrupt", "corrupt checkpoint"), ("empty", "empty"),
    ("code_exec", "needs code execution.*NeedsCodeExecution.*Only plain tensor state_dicts"),
    ("no_tensors", "no tensors found.*epoch, config"), ("st_truncated", "corrupt or truncated safetensors"),
    ("missing", "not found"), ("csv", "not a PyTorch checkpoint"), ("text", "not a PyTorch checkpoint")])
def test_bad_files_give_clear_errors(tmp_path, kind, pattern):
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint_file(_bad_file(tmp_path, kind))


def test_head_only_mismatch_suggests_num_classes(tmp_path, vig_tiny_sd):
    sd = dict(vig_tiny_sd, **{"head.weight": torch.zeros(10, 192), "head.bias": torch.zeros(10)})
    path = _write(tmp_path / "w10.pth", {"model": sd})
    with pytest.raises(CheckpointError, match="head has 10 classes .*num_classes=10"):
        load_pretrained(timm.create_model("vig_tiny"), path, model_name="vig_tiny")
    load_pretrained(timm.create_model("vig_tiny", num_classes=10), path)
