"""A bad option value (flag or config file) is one clear line naming the option, found before the data is scanned,
a model is built or the output folder is made; `vig eval` checks its options before loading anything too."""
import pytest

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.errors import UsageError
from vig.train import config


@pytest.fixture
def nothing_runs(monkeypatch):
    """Reaching the run (train) or the checkpoint (eval) means the check came too late."""
    def reached(*a, **k):
        raise AssertionError("the bad value was not caught up front")
    monkeypatch.setattr("vig.train.engine.run", reached)
    monkeypatch.setattr("vig.models.checkpoint.load_checkpoint_file", reached)


def _expect(vig_cli, argv, *phrases):
    code, out, err = vig_cli(argv)
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for p in phrases:
        assert p in err, err
    return err


@pytest.mark.parametrize("extra, phrases", [
    (["--opt", "adamz"], ["--opt: unknown optimizer 'adamz'", "adamw"]),
    (["--auto-augment", "foo"], ["--auto-augment: unknown policy 'foo'", "rand-m9-mstd0.5-inc1"]),
    (["--interpolation", "foo"], ["--interpolation: unknown mode 'foo'", "bicubic", "random"]),
])
def test_bad_flag_values(vig_cli, tmp_path, nothing_runs, extra, phrases):
    _expect(vig_cli, tiny_args(tmp_path / "r", *extra), *phrases)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--limit-train", "-3"], "--limit-train must be >= 1, got -3"),
    (["--limit-val", "-1"], "--limit-val must be >= 1, got -1"),
    (["--workers", "-1"], "--workers must be >= 0, got -1"),
    (["--threads", "-1"], "--threads must be >= 1, got -1"),
    (["--lr", "-1"], "--lr must be > 0, got -1.0"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--smoothing", "2"], "--smoothing must be in [0, 1), got 2.0"),
    (["--ema-decay", "1.5"], "--ema-decay must be in [0, 1), got 1.5"),
    (["--reprob", "2"], "--reprob must be in [0, 1], got 2.0"),
    (["--hflip", "2"], "--hflip must be in [0, 1], got 2.0"),
    (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0, got -1.0"),
    (["--ckpt-every-steps", "-1"], "--ckpt-every-steps must be >= 0, got -1"),
    (["--img-size", "0"], "--img-size must be >= 1, got 0"),
    (["--drop-path", "2"], "--drop-path must be in [0, 1), got 2.0"),
    (["--crop-pct", "0"], "--crop-pct must be in (0, 1], got 0.0"),
    (["--model-kwargs", "num_classes=7"], "--model-kwargs num_classes=7: the class count comes from the data; "
                                          "use --num-classes"),
    (["--model-kwargs", "drop_path_rate=0.1"], "--model-kwargs drop_path_rate=0.1: use --drop-path"),
])
def test_out_of_range_values(vig_cli, tmp_path, nothing_runs, extra, phrase):
    _expect(vig_cli, tiny_args(tmp_path / "r", *extra), phrase)
    assert not (tmp_path / "r").exists()


def test_help_says_how_limit_train_picks_and_how_epochs_resume(capsys):
    from vig.cli import main
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "first N training images" not in text
    assert "a fixed-seed sample spread over the classes of an ImageFolder" in text
    assert "with --resume a changed value is refused unless --reschedule is given" in text


@pytest.mark.parametrize("text, phrases", [
    ("epochs: one\n", ["--epochs: expected an integer, got 'one'"]),
    ("model_kwargs: depth=2\n", ["--model-kwargs: expected a mapping", "got 'depth=2'"]),
    ("opt: adamz\n", ["--opt: unknown optimizer 'adamz'"]),
    ("lr: [1]\n", ["--lr: expected a number"]),
    ("deterministic: 1\n", ["--deterministic: expected true or false"]),
])
def test_bad_config_file_values(vig_cli, tmp_path, nothing_runs, text, phrases):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    # no other flags: tiny_args' --epochs would win over the file
    _expect(vig_cli, ["train", "--output", str(tmp_path / "r"), "--config", str(cfg)], *phrases)
    assert not (tmp_path / "r").exists()


def test_good_values_pass_and_numbers_written_as_strings_are_read(tmp_path):
    cfg = tmp_path / "c.yaml"
    # YAML reads 1e-3 (no dot) as a string
    cfg.write_text("lr: 1e-3\nepochs: 3\nopt: lookahead_adamw\nauto_augment: augmix-m5-w4-d2\n"
                   "interpolation: random\nmodel_kwargs: {depth: 2}\n")
    c = config.resolve({"output": str(tmp_path / "r")}, cfg)
    assert c.lr == 1e-3 and isinstance(c.lr, float) and c.epochs == 3 and c.model_kwargs == {"depth": 2}
    for opt in ("sgd", "AdamW", "lamb"):
        assert config.resolve({"output": "x", "opt": opt}).opt == opt
    with pytest.raises(UsageError, match="--opt: unknown optimizer 'foo_adamw'"):
        config.resolve({"output": "x", "opt": "foo_adamw"})  # timm would quietly drop the prefix


def _eval_args(tmp_path, *extra):
    return ["eval", "--model", "vig_fmnist", "--checkpoint", str(tmp_path / "w.safetensors"), "--data", "fashion-mnist",
            "--limit", "8", *extra]


def test_eval_json_folder_missing(vig_cli, tmp_path, nothing_runs):
    _expect(vig_cli, _eval_args(tmp_path, "--json", str(tmp_path / "nope" / "ev.json")),
            f"--json {tmp_path / 'nope' / 'ev.json'}: folder {tmp_path / 'nope'} does not exist")
    _expect(vig_cli, _eval_args(tmp_path, "--json", str(tmp_path)), f"--json {tmp_path} is a folder")


def test_eval_bad_interpolation(vig_cli, tmp_path, nothing_runs):
    _expect(vig_cli, _eval_args(tmp_path, "--interpolation", "foo"), "--interpolation: unknown mode 'foo'", "bicubic")
    _expect(vig_cli, _eval_args(tmp_path, "--interpolation", "random"), "'random' is for training only")


@pytest.mark.parametrize("value", ["5", "0"])
def test_eval_crop_pct_out_of_range(vig_cli, tmp_path, nothing_runs, value):
    _expect(vig_cli, _eval_args(tmp_path, "--crop-pct", value), f"--crop-pct must be in (0, 1], got {float(value)}")


def test_output_under_a_file_fails_before_loading(tmp_path, capsys):
    from vig.cli import main
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", "--data", "default", "--output", str(afile / "run")]) == 2
    err = capsys.readouterr().err
    assert "afile is not a folder" in err and "Traceback" not in err


def test_a_usage_error_names_the_rank_that_met_it(tmp_path, capsys, monkeypatch):
    from vig.cli import main
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--model", "vig_fmnistt", "--output", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("vig train: error: [rank 1] unknown model 'vig_fmnistt'")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--model", "vig_fmnistt", "--output", str(tmp_path / "r")]) == 2
    assert "unknown model 'vig_fmnistt'" in capsys.readouterr().err


def test_config_file_switch_names_get_a_hint(tmp_path):
    from vig.errors import UsageError
    from vig.train.config import load_config_file
    path = tmp_path / "c.yaml"
    path.write_text("no-progress: true\n")
    with pytest.raises(UsageError, match=r"unknown option\(s\) no_progress \(a --no-X switch is the key X: "
                                         r"progress: false\)"):
        load_config_file(path)


def test_a_size_the_stem_does_not_read_whole_is_noted(vig_cli, tmp_path):
    code, printed, err = vig_cli(tiny_args(tmp_path / "run", "--img-size", "30", "--model-kwargs", "depth=1",
                                           batch=16, limit=16))
    assert code == 0, err
    assert "note: vig_fmnist's stem (stride 4) leaves 2 px of each 30 px input unread; --img-size 28 or 32" in printed
    code, printed, err = vig_cli(tiny_args(tmp_path / "run2", "--img-size", "32", "--model-kwargs", "depth=1",
                                           batch=16, limit=16))
    assert code == 0 and "unread" not in printed, err


def test_recipe_help_states_the_recipes_values():
    from vig.train.commands import TRAIN_OPTIONS
    (text,) = [h for flag, _, h in TRAIN_OPTIONS if flag == "--recipe"]
    folder = config.recipe_defaults("default", "vig_tiny", "/data/imagenet")
    fmnist = config.recipe_defaults("default", "vig_fmnist", "default")
    paper = config.recipe_defaults("paper", "vig_tiny", "/data/imagenet")
    assert f"on a folder: {folder['epochs']} epochs, batch {folder['batch_size']}" in text
    assert f"EMA {folder['ema_decay']}" in text and f"mixup {folder['mixup']} / cutmix {folder['cutmix']}" in text
    assert f"Fashion-MNIST: {fmnist['epochs']} epochs, batch {fmnist['batch_size']}" in text
    assert f"{paper['epochs']} epochs" in text


def test_a_missing_data_folder_is_said_before_the_model_is_asked_for(vig_cli, tmp_path, nothing_runs):
    """It said "--model is required when --data is a folder" for a mistyped path."""
    err = _expect(vig_cli, ["train", "--data", str(tmp_path / "nodir"), "--output", str(tmp_path / "r")],
                  "no such folder")
    assert "--model" not in err


def test_resume_and_overwrite_together_are_refused(vig_cli, tmp_path, nothing_runs):
    """--overwrite was silently dropped in favour of --resume."""
    _expect(vig_cli, tiny_args(tmp_path / "r", "--resume", "--overwrite"), "--resume", "--overwrite", "pass one")
