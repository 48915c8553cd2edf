"""config.yaml states what the run worked out from its options: the peak lr (base-lr x total batch / 512), the
total batch, the variant's own drop path when --drop-path is not given, amp, the warmup run and the eval transform.
The options themselves keep None for those (`lr: null`, `drop_path: null`), so before this record the saved file
did not say the values the paper's recipe table is about."""
import pytest
import yaml

from trainkit import image_folder, tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)


def _record(text):
    """The commented 'as run' block of a config.yaml, parsed."""
    lines = [line[4:] for line in text.splitlines() if line.startswith("#   ")]
    assert lines, text
    return yaml.safe_load("\n".join(lines))


def test_config_yaml_records_lr_batch_amp_and_eval_transform(vig_cli, tmp_path):  # noqa: F811
    code, out, err = vig_cli(tiny_args(tmp_path / "r", batch=32))
    assert code == 0, err
    text = (tmp_path / "r" / "config.yaml").read_text()
    rec = _record(text)
    # the Fashion-MNIST default recipe: base-lr 0.024 per 512 images, warmup 0.2 epochs, min-lr 1e-5 (scaled)
    assert rec["total_batch"] == 32 and rec["processes"] == 1
    assert rec["lr"] == pytest.approx(0.024 * 32 / 512)
    assert rec["min_lr"] == pytest.approx(1e-5 * 32 / 512)
    assert rec["warmup_epochs"] == pytest.approx(0.2)
    assert rec["betas"] == [0.9, 0.999] and rec["drop_path"] == 0.0 and rec["amp"] == "none"
    assert rec["eval_transform"]["crop_pct"] == pytest.approx(1.0)
    saved = yaml.safe_load(text)  # the record is comments: the options read back as they were given
    assert saved["lr"] is None and saved["drop_path"] is None and "total_batch" not in saved


def test_config_yaml_records_the_variants_own_drop_path(vig_cli, tmp_path):  # noqa: F811
    data = image_folder(tmp_path / "imgs", classes=2, per_class=4, size=32, val_per_class=1)
    code, out, err = vig_cli(["train", "--data", str(data), "--model", "vig_small", "--output", str(tmp_path / "s"),
                              "--epochs", "1", "--batch-size", "8", "--img-size", "32", "--no-progress",
                              "--threads", "1", "--workers", "0", "--no-tensorboard", "--ema-decay", "0"])
    assert code == 0, err
    text = (tmp_path / "s" / "config.yaml").read_text()
    assert yaml.safe_load(text)["drop_path"] is None
    rec = _record(text)
    assert rec["drop_path"] == pytest.approx(0.2)  # vig_small's official rate, as the log's recipe line says
    assert rec["lr"] == pytest.approx(1e-3 * 8 / 512)
    assert rec["eval_transform"] == {"img_size": 32, "crop_pct": 0.875, "interpolation": "bicubic"}
