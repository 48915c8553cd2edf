"""benchmarks/bench_fused_layers.py's CPU-testable parts: a clear refusal without CUDA, the layer settings it
varies per case (a tile or warp count left behind would time every later case, and the layer, with it), and each
case run end to end on one image's tokens under TRITON_INTERPRET=1 (this file as a script: the `interpreted`
fixture), with the timer stubbed and torch.compile off, so a case that no longer fits the layers it calls fails
here rather than on the GPU."""
import json
import math

import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script


def _load():
    return load_script("bench_fused_layers")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(_load(), tmp_path / "fused.json", monkeypatch, capsys)


def test_a_failing_case_restores_the_layer_settings(monkeypatch):
    """A timing that fails while a case has set its tile (gpu_ms raises only then, so a case that never set one
    fails the test too) must leave every setting as it found it."""
    bench = _load()
    gate = bench.gate_mod
    before = gate._TILE

    def gpu_ms(step, device):
        if gate._TILE != before:
            raise RuntimeError("kernel failed")
        return 1.0
    monkeypatch.setattr(bench, "gpu_ms", gpu_ms)
    monkeypatch.setattr(bench, "BATCH", 1)
    monkeypatch.setattr(bench, "TOKENS", 196)
    monkeypatch.setattr(gate, "gate_forward", lambda *a: (None, None, None))
    with pytest.raises(RuntimeError, match="kernel failed"):
        bench._gate_case(64, 1024, torch.device("cpu"))
    assert gate._TILE == before


def test_interpreted_cases_run_and_report(interpreted):
    gate, swiglu = interpreted["gate"], interpreted["swiglu"]
    assert gate["rows"] == 196 and gate["bwd_ms"] == 1.0
    assert swiglu["hidden"] == 256 and math.isfinite(swiglu["max_abs_diff"])
    assert interpreted["gate_persistent"]["rows"] == 196
    add_norm = interpreted["add_rmsnorm"]
    configs = [k[len("ours_bwd_ms_"):] for k in add_norm if k.startswith("ours_bwd_ms_")]
    assert len(configs) == 6 and add_norm["bytes_bwd_MB"] > add_norm["bytes_fwd_MB"] > 0
    # ours against inductor's math for the same backward (here eager torch): bf16 grads, interpreter truncation
    assert all(add_norm[f"max_rel_diff_{c}"] <= 1e-2 for c in configs), add_norm


if __name__ == "__main__":
    torch.set_num_threads(1)  # the child of one pytest-xdist worker: one core
    bench = _load()
    bench.BATCH, bench.TOKENS = 1, 196
    bench.gpu_ms = lambda step, device: (step(), 1.0)[1]
    torch.compile = lambda fn, **kwargs: fn
    cpu = torch.device("cpu")
    print(json.dumps({"gate": bench._gate_case(64, 2048, cpu), "gate_persistent": bench._gate_case(64, 1024, cpu, 3),
                      "swiglu": bench._swiglu_case(64, cpu), "add_rmsnorm": bench._add_norm_case(64, cpu)}))
