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
