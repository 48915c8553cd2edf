"""benchmarks/probe_tma_ws_mlp.py (the MLP projection op's TMA kernels at several launches) without a GPU: a
clear refusal that writes nothing. The kernels themselves are tested in tests/layers (the interpreter against
float64, and their default launch compiled for sm_90a)."""
import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(load_script("probe_tma_ws_mlp"), tmp_path / "probe.json", monkeypatch, capsys)


def test_the_sweep_holds_both_kernels_defaults():
    from vig.layers.fused.linear_swiglu_tma import DH_LAUNCH, FWD_LAUNCH
    launches = load_script("probe_tma_ws_mlp").LAUNCHES
    assert FWD_LAUNCH in launches and DH_LAUNCH in launches
