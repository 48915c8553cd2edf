"""benchmarks/bench_low_rank.py's CPU-testable parts: a clear refusal without CUDA, and one model's case run end to end
on 40 tokens under TRITON_INTERPRET=1 (this file as a script: the `interpreted` fixture) with the timer stubbed:
every launch row and the default are filled, the kernel and addmm agree (fp32), and the launch is left as it was (a
row's launch left behind would time every later row, and the models, with it)."""
import json

import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script


def _load():
    return load_script("bench_low_rank")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(_load(), tmp_path / "low_rank.json", monkeypatch, capsys)


def test_interpreted_case_fills_every_row(interpreted):
    bench = _load()
    row = interpreted["row"]
    assert interpreted["launch_after"] == interpreted["launch_before"]
    names = ["x".join(map(str, launch)) for launch in bench.LAUNCHES]
    assert set(row) == {"M", "R", "N", "plain_ms", "default_launch", "default", *names}
    for name in ["default", *names]:
        r = row[name]
        assert "error" not in r, (name, r)
        assert r["ms"] == 1.0 and r["rel_diff_vs_plain"] <= 1e-5, (name, r)


if __name__ == "__main__":
    torch.set_num_threads(1)
    bench = _load()
    before = list(bench.kernels.LAUNCH)
    bench.gpu_ms = lambda step, dev: (step(), 1.0)[1]
    bench.TOKENS = 40
    row = bench._case(192, torch.device("cpu"), torch.float32)  # fp32: the two paths' math, not bf16 rounding
    print(json.dumps({"row": row, "launch_before": before, "launch_after": list(bench.kernels.LAUNCH)}))
