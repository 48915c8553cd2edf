"""Options a resume may change that its checkpoint holds no state for: EMA turned on, fp16 after bf16 / fp32. Each
once failed as "the checkpoint does not match this run's model/optimizer (KeyError: 'model_ema')" or a
GradScaler RuntimeError about an empty state dict."""
import csv
import shutil

import pytest
import torch

from trainkit import folder_args, image_folder, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.train import checkpointing as ck

NO_EMA = ["--warmup-epochs", "0", "--lr", "1e-3", "--ema-decay", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("data") / "ds")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """A finished 1-epoch run (3 steps) without EMA, in fp32."""
    from vig.cli import main
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(folder_args(data, out, *NO_EMA)) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "r")
    return tmp_path / "r"


def test_resume_turning_ema_on_starts_it_from_the_checkpoint(vig_cli, data, run_copy):
    before = torch.load(run_copy / ck.LAST, weights_only=True)["model"]
    code, out, err = vig_cli(folder_args(data, run_copy, *NO_EMA[:-1], "0.9999", "--no-ema-warmup", "--resume",
                                         "--reschedule", epochs=2))
    assert code == 0, err
    assert "it starts from the checkpoint's weights" in out
    ema = torch.load(run_copy / ck.LAST, weights_only=True)["model_ema"]
    # at decay 0.9999 three steps move it by about 3e-4 of the way: still the resumed weights, not a fresh init
    for k, v in before.items():
        torch.testing.assert_close(ema[k], v, rtol=0, atol=1e-3 * (v.abs().max().item() + 1e-3), msg=k)
    rows = list(csv.DictReader(open(run_copy / "metrics.csv")))
    assert rows[0]["ema_top1"] == "" and rows[1]["ema_top1"] != ""


def test_resume_with_fp16_after_a_run_without_it(vig_cli, data, run_copy):
    code, out, err = vig_cli(folder_args(data, run_copy, *NO_EMA, "--resume", "--amp", "fp16", "--reschedule",
                                         epochs=2))
    assert code == 0, err
    assert "amp fp16" in out
    assert torch.load(run_copy / ck.LAST, weights_only=True)["scaler"]  # an fp16 run saves its scaler now


def test_resume_at_another_image_size_names_it(vig_cli, data, run_copy):
    """The position table's size follows --img-size; the refusal named only --num-classes and --model-kwargs."""
    code, _, err = vig_cli(folder_args(data, run_copy, *NO_EMA, "--resume", "--img-size", "48"))
    assert code == 2
    assert "--img-size" in err and "pos_embed" in err, err


def test_resume_turning_ema_off_says_so(vig_cli, data, tmp_path):
    from vig.cli import main
    out = tmp_path / "r"
    assert main(folder_args(data, out, *NO_EMA[:-1], "0.99")) == 0
    code, log, err = vig_cli(folder_args(data, out, *NO_EMA, "--resume", "--reschedule", epochs=2))
    assert code == 0, err
    assert "EMA weights are dropped" in log
    assert "model_ema" not in torch.load(out / ck.LAST, weights_only=True)
