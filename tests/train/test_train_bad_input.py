"""Each user mistake: exit code 2, one clear line on stderr, no traceback, nothing trained, and no output folder
left behind by a run that never started."""
import os

import numpy as np
from PIL import Image

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)


def _expect(vig_cli, argv, *phrases):
    output = argv[argv.index("--output") + 1]
    existed = os.path.exists(output)
    code, out, err = vig_cli(argv)
    assert existed or not os.path.exists(output), f"a failed start left {output} behind"
    assert code == 2, (out, err)
    assert "Traceback" not in err
    for p in phrases:
        assert p in err, err
    return err


def test_unknown_model_suggests_close_names(vig_cli, tmp_path):
    _expect(vig_cli, tiny_args(tmp_path / "r", "--model", "vig_tinny"), "unknown model 'vig_tinny'", "vig_tiny")


def test_missing_empty_and_classless_data_dirs(vig_cli, tmp_path):
    _expect(vig_cli, tiny_args(tmp_path / "r") + ["--data", str(tmp_path / "nope"), "--model", "vig_fmnist"],
            "no such folder")
    (tmp_path / "empty").mkdir()
    _expect(vig_cli, tiny_args(tmp_path / "r") + ["--data", str(tmp_path / "empty"), "--model", "vig_fmnist"],
            "is empty")
    root = tmp_path / "imgs"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "dog").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "dog" / "a.png")
    _expect(vig_cli, tiny_args(tmp_path / "r") + ["--data", str(root), "--model", "vig_fmnist"],
            "cat holds no images")
    _expect(vig_cli, tiny_args(tmp_path / "r", "--data-dir", str(tmp_path / "empty")),
            "Fashion-MNIST not found", "apt-get install")


def test_batch_larger_than_dataset(vig_cli, tmp_path):
    _expect(vig_cli, tiny_args(tmp_path / "r", batch=256), "larger than the training set (128 images)")


def test_resume_without_checkpoint(vig_cli, tmp_path):
    _expect(vig_cli, tiny_args(tmp_path / "r", "--resume"), "--resume: no checkpoint")


def test_output_dir_holding_another_run(vig_cli, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.csv").write_text("epoch\n")
    _expect(vig_cli, tiny_args(tmp_path / "r"), "already holds a run", "--resume", "--overwrite")


def test_corrupt_checkpoint_on_resume(vig_cli, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pth").write_bytes(b"PK\x03\x04 truncated zip")
    _expect(vig_cli, tiny_args(tmp_path / "r", "--resume"), "is corrupt or truncated")


def test_bad_config_file(vig_cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nlearning_rat: 3\n")
    _expect(vig_cli, tiny_args(tmp_path / "r", "--config", str(cfg)), "unknown option(s) learning_rat")


def test_bad_model_kwargs(vig_cli, tmp_path):
    _expect(vig_cli, tiny_args(tmp_path / "r", "--model-kwargs", "depth"), "expects KEY=VALUE")
    _expect(vig_cli, tiny_args(tmp_path / "r", "--model-kwargs", "embed_dim=65"), "vig_fmnist with")


def test_overwrite_keeps_the_old_run_when_the_new_one_fails_to_start(vig_cli, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch\n1\n")
    _expect(vig_cli, tiny_args(out, "--overwrite", "--model", "vig_tinny"), "unknown model 'vig_tinny'")
    assert (out / "metrics.csv").read_text() == "epoch\n1\n"
