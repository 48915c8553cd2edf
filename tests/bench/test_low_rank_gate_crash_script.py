"""benchmarks/device/low_rank_gate_crash.py (session 48's probe of the vig::low_rank_gate fault) on CPU under
TRITON_INTERPRET=1 (this file as a script: the `interpreted` fixture): every variant runs the forward and the backward
at a row count below one tile and at one over several tiles, within bf16 rounding of float64 (the dx error is against
the exact product of the bf16 inputs), and each variant's patches are undone when it ends."""
import json

from bench_scripts import load_script


def _load():
    return load_script("low_rank_gate_crash", "device")


def test_interpreted_variants_run_both_directions(interpreted):
    probe = _load()
    assert set(interpreted["rows"]) == set(probe.VARIANTS)
    for variant, rows in interpreted["rows"].items():
        assert [(r["rows"], r["phase"]) for r in rows] == [(17, "fwd"), (17, "bwd"), (300, "fwd"), (300, "bwd")]
        assert all(r["status"] == "ok" and r["rel_err"] <= 5e-3 for r in rows), (variant, rows)
    assert interpreted["restored"], "a variant's patches were left on the module"


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    import vig.layers.fused.low_rank_gate as kernels
    probe = _load()
    before = {n: getattr(kernels, n) for n in ("ROW_ELEMENTS", "WARPS", "low_rank_gate_fwd_kernel",
                                               "low_rank_gate_bwd_kernel")}
    rows = {v: probe.run_variant(v, device="cpu", rows=(17, 300)) for v in probe.VARIANTS}
    restored = all(getattr(kernels, n) is x for n, x in before.items())
    print(json.dumps({"rows": rows, "restored": restored}))
