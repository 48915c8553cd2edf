"""`vig eval`, `predict`, `convert` and `viz` take the model and its extra arguments from a checkpoint that
`vig train` (or `vig convert`) wrote, so a run folder's weights need no --model; files that record none (official
releases) ask for the flag by name."""
import json

import numpy as np
import torch
from safetensors.torch import load_file

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.data.idx import FIXTURE_DIR, load_split


def test_eval_predict_convert_without_model_flag(vig_cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = vig_cli(tiny_args(out, "--model-kwargs", "depth=2", batch=16, limit=32))
    assert code == 0, err
    evals = {}
    for name in ("best.safetensors", "last.pth"):
        # depth=2 is not the model's default: without the recorded kwargs the strict load would fail
        code, _, err = vig_cli(["eval", "--checkpoint", str(out / name), "--data", "fashion-mnist", "--data-dir",
                                str(FIXTURE_DIR), "--limit", "16", "--json", str(tmp_path / f"{name}.json")])
        assert code == 0, err
        evals[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert evals[name]["model"] == "vig_fmnist"

    x, _ = load_split("test", FIXTURE_DIR)
    from PIL import Image
    img = tmp_path / "one.png"
    Image.fromarray(x[0]).save(img)
    code, printed, err = vig_cli(["predict", str(img), "--checkpoint", str(out / "best.safetensors"), "--topk", "2"])
    assert code == 0, err
    assert len(printed.strip().splitlines()) == 2
    code, _, err = vig_cli(["viz", "attn", str(img), "--checkpoint", str(out / "best.safetensors"), "--img-size", "28",
                            "--out", str(tmp_path / "viz")])
    assert code == 0, err
    assert [p.name.startswith("attn_vig_fmnist_") for p in (tmp_path / "viz").glob("*.png")] == [True]
    # erf's extra models may be bare run files too: each names its model, and the recorded depth=2 loads strictly
    code, _, err = vig_cli(["viz", "erf", "--checkpoint", str(out / "best.safetensors"), "--compare",
                            str(out / "last.pth"), "--images", str(tmp_path), "--num-images", "1", "--img-size", "28",
                            "--out", str(tmp_path / "erf")])
    assert code == 0, err
    labels = json.loads((tmp_path / "erf" / "erf_summary.json").read_text())["models"]
    assert sorted(labels) == ["vig_fmnist[best]", "vig_fmnist[last]"]

    conv = tmp_path / "c.safetensors"
    code, printed, err = vig_cli(["convert", str(out / "last.pth"), str(conv)])
    assert code == 0, err
    assert "model vig_fmnist" in printed
    # last.pth holds the resolved size and transform (its config has None for defaults): convert keeps them
    from safetensors import safe_open
    with safe_open(str(conv), "pt") as f:
        meta = f.metadata()
    assert (meta["img_size"], meta["crop_pct"], meta["interpolation"]) == ("28", "1.0", "bicubic"), meta
    code, _, err = vig_cli(["eval", "--checkpoint", str(conv), "--data", "fashion-mnist", "--data-dir",
                            str(FIXTURE_DIR), "--limit", "16", "--json", str(tmp_path / "conv.json")])
    assert code == 0, err
    assert json.loads((tmp_path / "conv.json").read_text())["top1"] == evals["last.pth"]["top1"]


def test_a_file_that_names_no_model_asks_for_the_flag(vig_cli, tmp_path):
    import timm

    import vig.models  # noqa: F401
    bare = tmp_path / "official_like.pth"
    torch.save({"model": timm.create_model("vig_fmnist").state_dict()}, bare)
    img = tmp_path / "one.png"
    from PIL import Image
    Image.fromarray(load_split("test", FIXTURE_DIR)[0][0]).save(img)
    for argv in (["eval", "--checkpoint", str(bare), "--data", "fashion-mnist", "--data-dir", str(FIXTURE_DIR),
                  "--json", str(tmp_path / "e.json")],
                 ["predict", str(img), "--checkpoint", str(bare)],
                 ["convert", str(bare), str(tmp_path / "c.safetensors")],
                 ["predict", str(img)],
                 ["viz", "attn", str(img), "--checkpoint", str(bare), "--out", str(tmp_path / "viz")],
                 ["viz", "erf", "--checkpoint", str(bare), "--images", str(tmp_path), "--out", str(tmp_path / "viz")]):
        code, _, err = vig_cli(argv)
        assert code == 2 and "--model is required" in err and "Traceback" not in err, (argv, err)
    code, _, err = vig_cli(["viz", "erf", "--model", "vig_fmnist", "--compare", str(bare), "--images", str(tmp_path),
                            "--out", str(tmp_path / "viz")])
    assert code == 2 and f"--compare NAME={bare} is required" in err and "Traceback" not in err, err
    assert not any((tmp_path / name).exists() for name in ("e.json", "c.safetensors", "viz"))
    missing = str(tmp_path / "missing.safetensors")  # a file that is not there: said so, not that --model is needed
    for argv in (["eval", "--checkpoint", missing, "--data", "fashion-mnist", "--json", str(tmp_path / "e.json")],
                 ["predict", str(img), "--checkpoint", missing],
                 ["convert", missing, str(tmp_path / "c.safetensors")],
                 ["viz", "attn", str(img), "--checkpoint", missing, "--out", str(tmp_path / "viz")]):
        code, _, err = vig_cli(argv)
        assert code == 2 and "checkpoint file not found" in err and "--model" not in err, (argv, err)
    # the flag still works for such files
    code, _, err = vig_cli(["convert", str(bare), str(tmp_path / "c.safetensors"), "--model", "vig_fmnist"])
    assert code == 0, err
    assert set(load_file(tmp_path / "c.safetensors")) == set(torch.load(bare)["model"])


def test_recorded_kwargs_only_build_the_recorded_model():
    from vig.models.checkpoint import recorded_model_kwargs
    saved = {"model": "vig_fmnist", "model_kwargs": {"depth": 2}}
    assert recorded_model_kwargs(saved, "vig_fmnist") == {"depth": 2}
    assert recorded_model_kwargs(saved, "vig_tiny") == {}  # --model named another model: its own defaults
    assert recorded_model_kwargs({}, "vig_tiny") == {}


def test_convert_keeps_a_run_trained_at_another_size_exactly(vig_cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = vig_cli(tiny_args(out, "--img-size", "56", "--model-kwargs", "depth=1", batch=16, limit=16))
    assert code == 0, err
    src = load_file(out / "best.safetensors")
    conv = tmp_path / "c.safetensors"
    code, _, err = vig_cli(["convert", str(out / "best.safetensors"), str(conv)])
    assert code == 0, err
    got = load_file(conv)
    # built for 28 px, the model would have taken the 56 px run's position table resampled
    assert got.keys() == src.keys()
    assert all(torch.equal(got[k], src[k]) for k in src), [k for k in src if not torch.equal(got[k], src[k])]
    # viz, like eval and predict, runs at the size the run trained at unless --img-size says otherwise
    from PIL import Image
    img = tmp_path / "one.png"
    Image.fromarray(load_split("test", FIXTURE_DIR)[0][0]).save(img)
    maps = {}
    for name, size in (("default", []), ("explicit", ["--img-size", "56"])):
        code, _, err = vig_cli(["viz", "attn", str(img), "--checkpoint", str(out / "best.safetensors"), *size,
                                "--out", str(tmp_path / name)])
        assert code == 0, err
        (npz,) = (tmp_path / name).glob("*.npz")
        maps[name] = np.load(npz)["map_merged"]
    assert maps["default"].shape == maps["explicit"].shape and np.array_equal(maps["default"], maps["explicit"])


def test_a_model_flag_other_than_the_recorded_one_is_noted_first(tmp_path, capsys):
    """--model vig_tiny on a vig_fmnist run's file: the note that the file records vig_fmnist comes before the strict
    load's list of mismatched keys (which ended with its guess of the variant); the same name says nothing."""
    from vig.models.checkpoint import model_for_checkpoint
    saved = {"model": "vig_fmnist"}
    assert model_for_checkpoint("vig_tiny", tmp_path / "best.safetensors", saved) == "vig_tiny"
    err = capsys.readouterr().err
    assert "records the model vig_fmnist" in err and "--model vig_tiny builds another one" in err
    assert model_for_checkpoint("vig_fmnist", tmp_path / "best.safetensors", saved) == "vig_fmnist"
    assert model_for_checkpoint("vig_tiny", tmp_path / "official.pth", {}) == "vig_tiny"
    assert capsys.readouterr().err == ""
