"""benchmarks/bench_ablation.py (Table 3's last row): its comparison arithmetic, and a whole run on CPU."""
import json

import pytest
from bench_scripts import load_script

ablation = load_script("bench_ablation")


def _point(variant, mode, img, gpu=None, mem=None):
    return {"variant": variant, "mode": mode, "status": "ok", "img_per_s": img, "gpu_img_per_s": gpu,
            "peak_mem_mib": mem}


def test_compare_reports_wall_kernel_and_memory_change_in_the_papers_sign_convention():
    results = [_point("fused", "train", 120.0, 300.0, 87.0), _point("two_pass_torch", "train", 100.0, 200.0, 100.0),
               _point("fused", "infer", 50.0), _point("two_pass_torch", "infer", 40.0),
               {"variant": "two_pass_fla", "mode": "train", "status": "skipped"}]
    table = ablation.compare(results, "fused", "two_pass_torch")
    assert table["train"] == pytest.approx({"throughput_pct": 20.0, "gpu_throughput_pct": 50.0, "memory_pct": -13.0})
    # CPU points have no kernel time or peak memory: the change is unknown, not zero
    assert table["infer"]["throughput_pct"] == pytest.approx(25.0)
    assert table["infer"]["gpu_throughput_pct"] is None and table["infer"]["memory_pct"] is None
    # a variant without a finished point gives no row rather than a made-up one
    assert ablation.compare(results, "fused", "two_pass_fla") == {}


def test_cpu_run_writes_both_variants_and_their_comparison(tmp_path, capsys):
    rc = ablation.main(["--device", "cpu", "--batch", "2", "--img-size", "32", "--variants", "fused",
                        "two_pass_torch", "--modes", "infer", "--warmup", "1", "--repeats", "1", "--iters", "1",
                        "--out", str(tmp_path), "--name", "abl", "--no-plots"])
    assert rc == 0
    data = json.loads((tmp_path / "abl.json").read_text())
    assert data["complete"] and [r["variant"] for r in data["results"]] == ["fused", "two_pass_torch"]
    assert all(r["status"] == "ok" and r["img_per_s"] > 0 for r in data["results"])
    # both forms compute the same op: fp32 agreement at every call inside the model
    assert data["op_rel_diff_fp32"]["two_pass_torch"] < 1e-5
    assert "throughput_pct" in data["comparisons"]["fused_vs_two_pass_torch"]["infer"]
    assert "fused_vs_two_pass_torch [infer]" in capsys.readouterr().out


def test_compile_mode_compiles_each_variant_inside_its_op_swap(tmp_path, monkeypatch):
    import sys

    from vig.ops.bigla import bigla
    from vig.ops.bigla.packed import bigla_packed
    compiled = []

    def swapped():
        sites = [m for name, m in list(sys.modules.items()) if name.startswith("vig.layers")]
        originals = {"bigla": bigla, "bigla_packed": bigla_packed}
        return any(getattr(m, attr, op) is not op for m in sites for attr, op in originals.items())

    def fake_compile(model, mode):
        compiled.append((mode, swapped()))
        return model
    monkeypatch.setattr(ablation.runner, "compile_for_point", fake_compile)
    rc = ablation.main(["--device", "cpu", "--batch", "2", "--img-size", "32", "--variants", "fused",
                        "two_pass_torch", "--modes", "infer", "--warmup", "1", "--repeats", "1", "--iters", "1",
                        "--compile-mode", "reduce-overhead", "--out", str(tmp_path), "--name", "abl", "--no-plots"])
    assert rc == 0
    assert compiled == [("reduce-overhead", False), ("reduce-overhead", True)]
    data = json.loads((tmp_path / "abl.json").read_text())
    assert data["config"]["compile_mode"] == "reduce-overhead"
    assert not swapped()  # the model's own op is back after the run
