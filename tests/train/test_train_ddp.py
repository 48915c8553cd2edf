"""torchrun with 2 and 4 CPU processes (gloo) equals 1 process at the same global batch, and a checkpoint
written by rank 0 of a multi-process run resumes in a single process."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)

COMMON = ["--lr", "3e-3", "--warmup-epochs", "0.5", "--no-tensorboard"]


def torchrun(nproc, args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node",
           str(nproc), "-m", "vig", *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{nproc} process(es)" in res.stdout and res.stdout.count("vig train:") == 1  # rank 0 alone prints
    # the mixer's depthwise-conv weight is stored with the strides its gradient comes back in (bigla_attn.py)
    assert "Grad strides do not match" not in res.stderr, res.stderr[-3000:]
    return res


@pytest.mark.parametrize("nproc", [2, 4])
def test_gloo_processes_equal_one_process(tmp_path, vig_cli, nproc):
    code, _, err = vig_cli(tiny_args(tmp_path / "one", *COMMON, epochs=2, batch=32, limit=128))
    assert code == 0, err
    torchrun(nproc, tiny_args(tmp_path / "two", *COMMON, "--device", "cpu", epochs=2, batch=32 // nproc, limit=128))

    one = torch.load(tmp_path / "one" / "last.pth", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pth", weights_only=True)
    assert one["global_step"] == two["global_step"] == 8
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    rows = [list(csv.DictReader(open(tmp_path / d / "metrics.csv"))) for d in ("one", "two")]
    for a, b in zip(*rows):
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 1e-5
        assert a["top1"] == b["top1"] and a["top5"] == b["top5"]
    # step points: the mean over ranks (rank 0's own half-batch loss differs from the whole batch's)
    steps = [list(csv.DictReader(open(tmp_path / d / "steps.csv"))) for d in ("one", "two")]
    assert [a["step"] for a in steps[0]] == [b["step"] for b in steps[1]] and steps[0]
    for a, b in zip(*steps):
        assert abs(float(a["loss"]) - float(b["loss"])) < 1e-5, (a, b)


def test_two_process_checkpoint_resumes_in_one_process(tmp_path, vig_cli):
    run = tmp_path / "run"
    torchrun(2, tiny_args(run, *COMMON, "--device", "cpu", epochs=1, batch=16, limit=128))
    first = torch.load(run / "last.pth", weights_only=True)
    code, out, err = vig_cli(tiny_args(run, *COMMON, "--resume", "--reschedule", epochs=2, batch=32, limit=128))
    assert code == 0, err
    resumed = torch.load(run / "last.pth", weights_only=True)
    assert first["global_step"] == 4 and resumed["global_step"] == 8
    assert any(not torch.equal(resumed["model"][k], v) for k, v in first["model"].items())
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
