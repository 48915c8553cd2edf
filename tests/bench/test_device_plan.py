"""benchmarks/device/: the next GPU session's calls. They cannot run here, so check what can go stale or wrong
without a GPU: shell syntax, every repo file a call names exists, and the helpers that read a call's results."""
import json
import os
import re
import subprocess

import pytest
from bench_scripts import load_script

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PLAN = os.path.join(ROOT, "benchmarks", "device")
SCRIPTS = sorted(f for f in os.listdir(PLAN) if f.endswith(".sh"))


def _load(name):
    return load_script(name, "device")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_names_existing_files(script):
    path = os.path.join(PLAN, script)
    subprocess.run(["bash", "-n", path], check=True)
    text = open(path).read()
    named = set(re.findall(r"\b((?:benchmarks|tests|src)/[\w/.-]+\.(?:py|sh))\b", text))
    missing = [p for p in named if not os.path.exists(os.path.join(ROOT, p))]
    assert not missing, f"{script} names files that are not in the tree: {missing}"


def _bench_shapes():
    """The shape names benchmarks/bench_bigla.py knows (SHAPES and EXTRA_SHAPES), read from its source."""
    import ast
    tree = ast.parse(open(os.path.join(ROOT, "benchmarks", "bench_bigla.py")).read())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("SHAPES", "EXTRA_SHAPES"):
            names.update(key.value for key in node.value.keys)
    return names


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_shapes_are_known_to_the_op_bench(script):
    """A misspelt shape would cost a device call: bench_bigla.py refuses it only on the GPU machine."""
    known = _bench_shapes()
    assert "ViG-T 224" in known
    text = open(os.path.join(PLAN, script)).read()
    asked = [name for arg in re.findall(r'--shapes "([^"$]+)"', text) for name in arg.split(",")]
    assert [name for name in asked if name not in known] == [], script


def test_every_call_is_in_the_plan_readme():
    readme = open(os.path.join(PLAN, "README.md")).read()
    assert [s for s in SCRIPTS if s.startswith("call") and s not in readme] == []


def test_compare_models_pairs_each_vig_row_with_its_deit(tmp_path, capsys):
    def point(model, mode, ips):
        return {"model": model, "mode": mode, "img_size": 224, "batch": 256, "status": "ok", "img_per_s": ips,
                "ms_per_step": 256e3 / ips, "peak_mem_mib": 1.0}
    rows = [point("vig_tiny", "train", 900.0), point("deit_tiny_patch16_224", "train", 1000.0),
            point("vig_tiny", "infer", 3000.0), point("deit_tiny_patch16_224", "infer", 2000.0)]
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"results": rows}))
    _load("compare_models").main([str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert "0.900x" in lines[0] and "1.500x" in lines[2]


def test_compare_models_prefers_the_deit_of_the_same_file(tmp_path, capsys):
    """Each ViG row against the DeiT of its own process; a file without one takes another file's, marked."""
    def point(model, ips):
        return {"model": model, "mode": "infer", "img_size": 224, "batch": 256, "status": "ok", "img_per_s": ips,
                "ms_per_step": 256e3 / ips, "peak_mem_mib": 1.0}
    files = {"a": [point("vig_tiny", 1000.0), point("deit_tiny_patch16_224", 2000.0)],
             "b": [point("deit_tiny_patch16_224", 500.0), point("vig_tiny", 1000.0)],
             "c": [point("vig_tiny", 1500.0)]}
    for name, rows in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": rows}))
    _load("compare_models").main([str(tmp_path / f"{n}.json") for n in files])
    lines = capsys.readouterr().out.splitlines()
    assert "0.500x" in lines[0] and "process" not in lines[0]
    assert "2.000x" in lines[3] and "process" not in lines[3]
    assert "3.000x" in lines[4] and "(other process)" in lines[4]


def test_compare_op_matches_a_variant_with_the_method_it_varies():
    base_method = _load("compare_op").base_method
    row = {"ours": {}, "ours_gate_logits": {}, "bandwidth_floor": {}}
    assert base_method("ours_gate_logits_cap200", row) == "ours_gate_logits"
    assert base_method("ours_bw1", row) == "ours"
    assert base_method("fla_chunk_two_pass", row) is None
    assert base_method("ours_gate_logits", row) == "ours_gate_logits"  # against BASE's run: the same method
    assert base_method("ours_gate_logits", row, same_run=True) == "ours"  # within one run: never itself
    variants = {"ours": {}, "ours_wsdot": {"env": {"K": "1"}}, "ours_wsdot_t": {"env": {"K": "2"}}}
    assert base_method("ours_wsdot_t", variants, same_run=True) == "ours"  # never another variant


def test_compare_op_one_run_pairs_variants_and_fla(tmp_path, capsys):
    def point(fwd, fwd_bwd):
        return {"fwd_gpu_ms": fwd, "fwd_bwd_gpu_ms": fwd_bwd}
    results = {"ViG-T 224": {"ours": point(0.1, 0.4), "ours_gate_logits": point(0.1, 0.5),
                             "ours_gate_logits_wsdot_t": point(0.1, 0.45), "fla_chunk_two_pass": point(0.5, 1.6)}}
    (tmp_path / "bigla_H200.json").write_text(json.dumps({"results": results}))
    _load("compare_op").main(str(tmp_path))
    out = capsys.readouterr().out
    assert "0.450 / 0.500 0.90x" in out  # the variant against ours_gate_logits
    assert "5.00x" in out and "4.00x" in out  # fla / ours, fwd and fwd+bwd
