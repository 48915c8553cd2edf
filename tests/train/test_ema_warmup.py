"""The EMA's decay warmup (--ema-warmup, on in the default recipe on a folder). At a fixed 0.9998 a fine-tune of a few
hundred steps kept an EMA of mostly its starting weights and a random head, so best_ema.safetensors and `vig eval` of
last.pth (EMA weights by default) scored near chance."""
import pytest
import torch
import yaml

from trainkit import folder_args, image_folder, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.train import checkpointing as ck
from vig.train.config import TrainConfig
from vig.train.setup import build_ema


@pytest.mark.parametrize("warmup", (False, True))
def test_build_ema_ramps_its_decay_only_with_warmup(warmup):
    ema = build_ema(torch.nn.Linear(2, 2), TrainConfig(output="x", ema_decay=0.9998, ema_warmup=warmup))
    early, late = ema.get_decay(31), ema.get_decay(10 ** 7)
    assert late == pytest.approx(0.9998)
    assert early == (pytest.approx(0.9, abs=2e-3) if warmup else pytest.approx(0.9998))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("data") / "ds")


def _ema_gap(out):
    """The EMA's distance from the trained weights at the end of a run, over all weights."""
    saved = torch.load(out / ck.LAST, weights_only=True)
    return sum((saved["model_ema"][k].float() - v.float()).norm() ** 2 for k, v in saved["model"].items()) ** 0.5


@pytest.mark.parametrize("flags, warmup", (([], True), (["--no-ema-warmup"], False), (["--recipe", "paper"], False)))
def test_recipes_and_flag_set_the_warmup(vig_cli, data, tmp_path, flags, warmup):
    out = tmp_path / "r"
    code, log, err = vig_cli(folder_args(data, out, "--warmup-epochs", "0", *flags, "--epochs", "1"))
    assert code == 0, err
    assert yaml.safe_load((out / "config.yaml").read_text())["ema_warmup"] is warmup
    assert ("(warmup)" in log + err) is warmup, log


def test_a_short_runs_ema_follows_the_model_with_warmup(vig_cli, data, tmp_path):
    """Same seed, same weights trained (EMA does not touch them). timm copies the weights at the first update (decay 0
    at steps 0 and 1); after that a fixed 0.9998 barely moves over the last 2 steps, the ramp (0.37 at step 2)
    follows the model."""
    gaps = {}
    for flag in ("--ema-warmup", "--no-ema-warmup"):
        out = tmp_path / flag
        code, _, err = vig_cli(folder_args(data, out, "--warmup-epochs", "0", flag))
        assert code == 0, err
        gaps[flag] = _ema_gap(out)
    assert gaps["--ema-warmup"] < 0.5 * gaps["--no-ema-warmup"], gaps


def _saved_before_the_option(out):
    path = out / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["ema_warmup"]
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    return path


def test_a_run_saved_before_the_option_keeps_a_fixed_decay(vig_cli, data, tmp_path):
    """Resumed, or started again elsewhere with --config: a config.yaml lists every option, so one without
    ema_warmup had a fixed decay. A user's file that sets no ema_decay takes the recipe's (test above)."""
    out = tmp_path / "r"
    assert vig_cli(folder_args(data, out, "--warmup-epochs", "0"))[0] == 0
    path = _saved_before_the_option(out)
    code, _, err = vig_cli(folder_args(data, out, "--warmup-epochs", "0", "--resume", "--reschedule", epochs=2))
    assert code == 0, err
    assert yaml.safe_load(path.read_text())["ema_warmup"] is False
    again = tmp_path / "again"
    code, _, err = vig_cli(["train", "--config", str(path), "--output", str(again), "--epochs", "1"])
    assert code == 0, err
    assert yaml.safe_load((again / "config.yaml").read_text())["ema_warmup"] is False
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(path.read_text()).items() if k not in ("ema_decay", "ema_warmup")}))
    code, _, err = vig_cli(["train", "--config", str(user), "--output", str(tmp_path / "u"), "--epochs", "1"])
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "u" / "config.yaml").read_text())["ema_warmup"] is True
