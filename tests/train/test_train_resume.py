"""A run killed with SIGKILL and resumed ends with the same weights as an uninterrupted run (CPU, --deterministic)."""
import os
import signal
import subprocess
import sys
import time

import torch

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)

ARGS = ["--deterministic", "--ckpt-every-steps", "3", "--lr", "3e-3", "--warmup-epochs", "0.5"]


def _weights(out):
    ckpt = torch.load(out / "last.pth", weights_only=True)
    return ckpt["model"], ckpt["optimizer"]["state"]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, vig_cli):
    args = lambda out: tiny_args(out, *ARGS, epochs=3, batch=16, limit=96)  # noqa: E731  6 steps per epoch
    try:  # the uninterrupted reference and the resume run in-process (one torch thread, as the subprocess)
        code, _, err = vig_cli(args(tmp_path / "ref"))
    finally:
        torch.use_deterministic_algorithms(False)
    assert code == 0, err

    env = dict(os.environ, OMP_NUM_THREADS="1")  # killed run: a real process, so SIGKILL is real
    proc = subprocess.Popen([sys.executable, "-m", "vig", *args(tmp_path / "cut")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "cut" / "last.pth"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first checkpoint could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert killed_at < 18  # it really was cut short

    try:
        code, out, err = vig_cli(tiny_args(tmp_path / "cut", "--resume", epochs=3, batch=16, limit=96))
    finally:
        torch.use_deterministic_algorithms(False)
    assert code == 0, err
    assert "resumed from" in out
    (wa, oa), (wb, ob) = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for i in oa:
        assert torch.equal(oa[i]["exp_avg"], ob[i]["exp_avg"])
    ref_rows = (tmp_path / "ref" / "metrics.csv").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    strip = lambda rows: [r.split(",")[:8] for r in rows]  # noqa: E731  timing columns differ
    assert strip(ref_rows) == strip(cut_rows)
    # the step points of the killed epoch were saved with its checkpoint, so the curves lose none
    ref_steps, cut_steps = ((tmp_path / d / "steps.csv").read_text() for d in ("ref", "cut"))
    assert ref_steps == cut_steps


def test_resume_with_another_model_names_both():
    from types import SimpleNamespace

    import pytest

    from vig.errors import UsageError
    from vig.train.engine import restore
    s = SimpleNamespace(cfg=SimpleNamespace(model="vig_small", output="run1"))
    with pytest.raises(UsageError, match="run1 was trained with --model vig_tiny, not vig_small"):
        restore(s, {"config": {"model": "vig_tiny"}, "model": {}})


def test_saved_config_paths_are_absolute_so_resume_works_elsewhere(tmp_path, monkeypatch):
    import yaml

    from vig.train import config as config_mod
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "run").mkdir()
    cfg = config_mod.TrainConfig(data="imgs", output="run", pretrained=None)
    config_mod.save(cfg, tmp_path / "run" / "config.yaml")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"] == str(tmp_path / "imgs") and saved["output"] == str(tmp_path / "run")
    cfg = config_mod.TrainConfig(data="default", output="run")
    config_mod.save(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"] == "default"
