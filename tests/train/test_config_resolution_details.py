"""Option resolution details no other test pins: fractional values for integer options are refused (not truncated),
one-command flags in a config file are ignored, an old saved config keeps its fixed EMA decay, upper bounds that
exclude their end, and the paper recipe's schedule (Swin's config.py, which the official code follows: 300 epochs,
20 warmup epochs from 5e-7, cosine to 5e-6)."""
import pytest

from vig.errors import UsageError
from vig.train import config

FOLDER = {"output": "x", "model": "vig_tiny", "data": "/data/imagenet"}


def test_a_fractional_value_for_an_integer_option_is_refused(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 2.5\n")
    with pytest.raises(UsageError, match="--epochs: expected an integer, got 2.5"):
        config.resolve(dict(FOLDER), f)
    f.write_text("epochs: 3.0\n")  # a whole number written as a float is fine
    assert config.resolve(dict(FOLDER), f).epochs == 3


def test_one_command_flags_in_a_file_are_ignored(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("resume: true\noverwrite: true\nepochs: 7\n")
    assert config.load_config_file(f) == {"epochs": 7}
    assert "ignoring resume, overwrite" in capsys.readouterr().err
    cfg = config.resolve(dict(FOLDER), f)
    assert not cfg.resume and not cfg.overwrite and cfg.epochs == 7


def test_a_saved_config_without_ema_warmup_keeps_a_fixed_decay(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_text("ema_decay: 0.999\n")  # written before the option existed
    assert config.resolve(dict(FOLDER), f).ema_warmup is False  # the folder recipe alone would ramp it
    assert config.resolve(dict(FOLDER)).ema_warmup is True


@pytest.mark.parametrize("name,value", [("drop_path", 1.0), ("smoothing", 1.0), ("ema_decay", 1.0)])
def test_upper_bounds_that_exclude_their_end(name, value):
    with pytest.raises(UsageError, match=rf"--{name.replace('_', '-')} must be in \[0, 1\), got 1.0"):
        config.resolve({**FOLDER, name: value})
    config.resolve({**FOLDER, name: 0.5})


def test_paper_recipe_schedule():
    cfg = config.resolve({**FOLDER, "recipe": "paper"})
    assert (cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr) == (300, 20, 5e-7, 5e-6)
