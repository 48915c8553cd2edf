"""benchmarks/bench_models.py: the `vig info` agreement check and the README table it writes."""
import importlib.util
import os

import pytest
import torch

from vig.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vig_info_and_bench_counter_agree():
    # 64 px keeps the real CPU forward of `vig info` cheap; the spec totals at 224 are checked on meta
    # in test_bench_flops.py
    (row,) = _script("bench_models").info_check(["vig_tiny"], img_size=64)
    assert "error" not in row, row
    assert row["rel_diff"] < 1e-9  # same model, same counter, same BiGLA formula
    assert row["bench_bigla_gmacs"] == pytest.approx(12 * 6 * 16 * 3 * 32 * 64 / 1e9, rel=1e-6)  # 4x4 tokens


def test_markdown_table_has_ratios_and_statuses():
    bm = _script("bench_models")
    base = {"suite": "table", "img_size": 224, "batch": 256, "dtype": "bf16", "gmacs_fwd": 1.0}
    results = [
        {**base, "model": "vig_tiny", "mode": "infer", "status": "ok", "img_per_s": 500.0, "peak_mem_mib": 1024.0},
        {**base, "model": "vig_tiny", "mode": "train", "status": "oom"},
        {**base, "model": "deit_tiny_patch16_224", "mode": "infer", "status": "ok", "img_per_s": 1000.0,
         "peak_mem_mib": 2048.0},
        {**base, "model": "deit_tiny_patch16_224", "mode": "train", "status": "ok", "img_per_s": 300.0,
         "peak_mem_mib": 4096.0},
    ]
    env = {"device_name": "X", "torch": "t", "triton": "tr", "bigla_backend_auto": "torch", "created_utc": "now"}
    md = bm.markdown({"env": env, "results": results})
    vig_row = next(line for line in md.splitlines() if line.startswith("| table | ViG-T"))
    assert "| 500 |" in vig_row and "| oom |" in vig_row and "| 1.00 |" in vig_row and "0.50x" in vig_row


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vig_bench_on_gpu_records_memory_and_versions(tmp_path):
    rc = main(["bench", "--models", "vig_tiny", "--img-sizes", "64", "--batch-sizes", "2", "--train",
               "--warmup", "1", "--repeats", "2", "--out", str(tmp_path), "--name", "g", "--no-plots"])
    assert rc == 0
    import json
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["env"]["device_name"] == torch.cuda.get_device_name() and data["env"]["triton"]
    assert all(p["status"] == "ok" and p["peak_mem_mib"] > 0 for p in data["results"])
