"""benchmarks/bench_linear_swiglu.py's CPU-testable parts: a clear refusal without CUDA, and one model's case run end
to end on 40 tokens under TRITON_INTERPRET=1 (this file as a script: the `interpreted` fixture) with the timers
stubbed: every block row and the defaults are filled, the split and fused outputs agree, and the block tables are
left as they were (a row's blocks left behind would time every later row, and the models, with them)."""
import json

import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script


def _load():
    return load_script("bench_linear_swiglu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(_load(), tmp_path / "lsw.json", monkeypatch, capsys)


def test_interpreted_case_fills_every_row(interpreted):
    bench = _load()
    row = interpreted["row"]
    assert interpreted["tables_after"] == interpreted["tables_before"]
    names = ["x".join(map(str, b)) for b in bench.BLOCKS]
    assert set(row) == {"M", "K", "N", "split", "default", *names}
    for name in names:
        r = row[name]
        assert "error" not in r, (name, r)
        assert r["fwd_ms"] == r["fwd_bwd_ms"] == 1.0 and r["rel_diff_vs_split"] <= 1e-5, (name, r)


if __name__ == "__main__":
    torch.set_num_threads(1)
    bench = _load()
    kernels = bench.kernels
    tables = ("FWD_BLOCKS", "BWD_BLOCKS")
    before = [getattr(kernels, t) for t in tables]
    bench.gpu_ms = lambda step, dev: (step(), 1.0)[1]
    bench.peak_extra_mib = lambda step, dev: 0.0
    bench.TOKENS = 40
    # fp32: the rows compare the two paths' math, not bf16 rounding
    row = bench._case(64, torch.device("cpu"), bench.BLOCKS, torch.float32)
    print(json.dumps({"row": row, "tables_before": before, "tables_after": [getattr(kernels, t) for t in tables]}))
