"""benchmarks/probe_tma_ws_mlp.py (the MLP projection forward as a persistent warp-specialized TMA GEMM over W with
its a / b rows interleaved) without a GPU: a clear refusal that writes nothing, the interleave, the kernel's math
under TRITON_INTERPRET=1 (this file as a script: the `interpreted` fixture) against float64 on shapes that leave
partial row, column and K tiles, and each listed launch compiled for sm_90a without spills."""
import json

import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script
from numerics import rel_rmse


def _load():
    return load_script("probe_tma_ws_mlp")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(_load(), tmp_path / "probe.json", monkeypatch, capsys)


def test_interleave_alternates_the_halves_rows():
    w = torch.arange(12.0).reshape(6, 2)  # Wa rows 0-2, Wb rows 3-5
    assert torch.equal(_load().interleave(w), w[[0, 3, 1, 4, 2, 5]])


def test_interpreted_kernel_matches_float64(interpreted):
    for case, err in interpreted.items():
        assert err <= 1e-5, (case, err)


def test_launches_compile_for_sm90_without_spills():
    from vig.ops.bigla.triton import aot
    why = aot.missing_toolchain()
    if why:
        pytest.skip(why)
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    probe = _load()
    fn = probe.linear_swiglu_tma_kernel
    for bm, bn, bk, warps, stages, ws in probe.LAUNCHES:
        sig = {"x_desc": f"tensordesc<bf16[{bm}, {bk}]>", "w_desc": f"tensordesc<bf16[{bn}, {bk}]>",
               "y_desc": f"tensordesc<bf16[{bm}, {bn // 2}]>", "M": "i32", "N2": "i32", "K": "i32"}
        consts = dict(BM=bm, BN=bn, BK=bk, NUM_PROGRAMS=132, WS=ws)
        sig.update({name: "constexpr" for name in consts})
        compiled = triton.compile(ASTSource(fn, sig, {(fn.arg_names.index(k),): v for k, v in consts.items()}, {}),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
        assert compiled.metadata.shared <= aot.MAX_SHARED_SM90
        with tempfile.TemporaryDirectory() as tmp:
            with open(f"{tmp}/k.ptx", "w") as f:
                f.write(compiled.asm["ptx"])
            report = subprocess.run([aot.tool(90, "ptxas"), "-v", "-arch=sm_90a", f"{tmp}/k.ptx", "-o", f"{tmp}/k.o"],
                                    capture_output=True, text=True, check=True).stderr
        assert "0 bytes spill stores" in report, ((bm, bn, bk, warps, stages, ws), report)


if __name__ == "__main__":
    import torch.nn.functional as F
    torch.set_num_threads(1)
    probe = _load()
    out = {}
    # fp32: the interpreter's bf16 dots are not the GPU's; the rows test the tiling, split and epilogue
    for name, (M, K, N, launch) in {"partial_tiles": (80, 48, 40, (32, 32, 16, 4, 2, True)),
                                    "not_specialized": (64, 32, 24, (16, 16, 16, 4, 2, False))}.items():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(M, K, generator=gen)
        w = torch.randn(2 * N, K, generator=gen) / K ** 0.5
        a, b = F.linear(x.double(), w.double()).chunk(2, dim=-1)
        out[name] = rel_rmse(probe.tma_forward(x, probe.interleave(w), launch, 3), F.silu(a) * b)
    print(json.dumps(out))
