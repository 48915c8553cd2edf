"""--raw-weights: eval, predict and convert take a last.pth's raw weights instead of its EMA ones (the default, as
timm loads them); a file with EMA weights only is refused with the flag."""
import csv
import json

import torch
from safetensors.torch import load_file

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.data.idx import FIXTURE_DIR


def _eval(vig_cli, ckpt, out_json, *extra):
    code, _, err = vig_cli(["eval", "--checkpoint", str(ckpt), "--data", "fashion-mnist", "--data-dir",
                            str(FIXTURE_DIR), "--limit", "64", "--json", str(out_json), *extra])
    assert code == 0, err
    return json.loads(out_json.read_text())["top1"], err


def test_raw_weights_choose_last_pths_other_half(vig_cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = vig_cli(tiny_args(run, "--model-kwargs", "depth=1", "--ema-decay", "0.5", batch=16, limit=128))
    assert code == 0, err
    last = list(csv.DictReader(open(run / "metrics.csv")))[-1]
    ema_top1, err = _eval(vig_cli, run / "last.pth", tmp_path / "ema.json")
    assert "loading the EMA ones" in err and "--raw-weights for the others" in err
    raw_top1, err = _eval(vig_cli, run / "last.pth", tmp_path / "raw.json", "--raw-weights")
    assert "loading the EMA" not in err
    assert (raw_top1, ema_top1) == (float(last["top1"]), float(last["ema_top1"]))  # the last epoch's logged scores

    from PIL import Image

    from vig.data.idx import load_split
    img = tmp_path / "one.png"
    Image.fromarray(load_split("test", FIXTURE_DIR)[0][0]).save(img)
    printed = {}
    for flag in ([], ["--raw-weights"]):
        code, printed[bool(flag)], err = vig_cli(["predict", str(img), "--checkpoint", str(run / "last.pth"), *flag])
        assert code == 0 and not (flag and "loading the EMA" in err), err
    assert printed[True] != printed[False]  # other weights, other probabilities

    saved = torch.load(run / "last.pth", weights_only=True)
    assert any(not torch.equal(v, saved["model_ema"][k]) for k, v in saved["model"].items())  # two different halves
    for flag, key in (([], "model_ema"), (["--raw-weights"], "model")):
        out = tmp_path / f"{key}.safetensors"
        code, _, err = vig_cli(["convert", str(run / "last.pth"), str(out), *flag])
        assert code == 0, err
        got = load_file(out)
        assert all(torch.equal(got[k], v) for k, v in saved[key].items()), key


def test_raw_weights_refuse_an_ema_only_file(vig_cli, tmp_path):
    import timm

    import vig.models  # noqa: F401
    ema_only = tmp_path / "ema_only.pth"
    torch.save({"model_ema": timm.create_model("vig_fmnist").state_dict()}, ema_only)
    code, _, err = vig_cli(["convert", str(ema_only), str(tmp_path / "c.safetensors"), "--model", "vig_fmnist",
                            "--raw-weights"])
    assert code == 2 and "holds EMA weights ('model_ema') only; drop --raw-weights" in err, err
    assert not (tmp_path / "c.safetensors").exists()


def test_raw_weights_refuse_a_safetensors_file(vig_cli, tmp_path):
    """A .safetensors file holds one set of weights (best_ema.safetensors: the EMA ones): the flag was ignored."""
    import timm

    import vig.models  # noqa: F401
    from vig.models.checkpoint import save_safetensors_atomic
    path = tmp_path / "best_ema.safetensors"
    save_safetensors_atomic(timm.create_model("vig_fmnist").state_dict(), path, {"model": "vig_fmnist"})
    code, _, err = vig_cli(["convert", str(path), str(tmp_path / "c.safetensors"), "--raw-weights"])
    assert code == 2 and "holds one set" in err and "drop the flag" in err, err
    assert not (tmp_path / "c.safetensors").exists()
