"""Helpers shared by the training tests (a module, not conftest.py: tests/conftest.py already exists)."""
import os
import subprocess
import sys

import pytest

from vig.data.idx import FIXTURE_DIR


def tiny_args(out, *extra, epochs=1, batch=32, limit=128):
    """A seconds-long run: the committed 500/200-image Fashion-MNIST fixture, the small default model."""
    return ["train", "--data", "fashion-mnist", "--data-dir", str(FIXTURE_DIR), "--output", str(out),
            "--epochs", str(epochs), "--batch-size", str(batch), "--limit-train", str(limit), "--limit-val", "64",
            "--no-progress", "--threads", "1", "--workers", "0", *extra]


@pytest.fixture
def vig_cli(capsys):
    """Run `vig ...` in-process; returns (exit code, stdout, stderr)."""
    from vig.cli import main

    def run(argv):
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err
    return run


def run_subprocess(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "vig", *args], capture_output=True, text=True, env=env, **kw)


def image_folder(root, classes=3, per_class=8, size=32, val_per_class=2):
    """A tiny RGB ImageFolder root (train/ and val/, one folder per class c0, c1, ...) of seeded noise PNGs."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(classes)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // (c + 1)  # classes differ a little
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def folder_args(data, out, *extra, epochs=1, batch=8):
    """A run on an image_folder(): vig_fmnist at 32 px, 3 steps an epoch for 3 classes x 8 images at batch 8."""
    return ["train", "--data", str(data), "--model", "vig_fmnist", "--output", str(out), "--epochs", str(epochs),
            "--batch-size", str(batch), "--img-size", "32", "--no-progress", "--threads", "1", "--workers", "0",
            "--no-tensorboard", *extra]
