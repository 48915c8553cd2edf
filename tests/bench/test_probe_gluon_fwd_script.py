"""benchmarks/probe_gluon_fwd.py (the short-sequence forward in Gluon, a probe beside the op) on a machine without a
GPU: a clear refusal that writes nothing, and its kernel compiled for sm_90a with no more layout conversions than its
design names (the point of writing it in Gluon: per chunk step only the state into the B-operand layout, the scaled
q / k tiles into the dots' operand layouts and the decay vector; 4 in the first pass and 9 in the second)."""
import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script


def _load():
    return load_script("probe_gluon_fwd")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(_load(), tmp_path / "probe.json", monkeypatch, capsys)


def test_kernel_compiles_for_sm90_with_the_designed_conversions():
    from vig.ops.bigla.triton import aot
    why = aot.missing_toolchain()
    if why:
        pytest.skip(why)
    from triton.experimental.gluon._runtime import GluonASTSource
    compiled, _ = aot.compile_for(_load().bigla_fwd_gluon_kernel, dict(K=32, V=64, BT=16), {"num_warps": 1},
                                  pointer_types={"ob": torch.float32, "flags": torch.int32},
                                  arg_types={"T": "i32", "H": "i32"}, source=GluonASTSource)
    assert compiled.asm["cubin"]
    assert compiled.asm["ttgir"].count("ttg.convert_layout") <= 13
    assert compiled.asm["ttgir"].count("tt.dot") == 7  # 2 in the first pass, 5 in the second
