"""The BiGLA benchmark scripts' CPU-testable parts: variant parsing and the environment overrides that
select kernel settings per variant (a leak would silently run every later variant with the wrong kernel)."""
import importlib.util
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def _load(name):
    sys.path.insert(0, BENCH)  # profile_bigla imports its sibling bench_bigla
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCH)


def test_parse_variant():
    bench = _load("bench_bigla")
    assert bench.parse_variant("default:") == ("default", {})
    assert bench.parse_variant("bf16:VIG_BIGLA_PREC=bf16,VIG_BIGLA_CHUNK_BWD=16") == (
        "bf16", {"VIG_BIGLA_PREC": "bf16", "VIG_BIGLA_CHUNK_BWD": "16"})


def test_env_overrides_restore_even_after_an_error(monkeypatch):
    bench = _load("bench_bigla")
    monkeypatch.setenv("VIG_BIGLA_CHUNK", "32")
    monkeypatch.delenv("VIG_BIGLA_PATH", raising=False)
    with pytest.raises(RuntimeError):
        with bench.env_overrides({"VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_PATH": "seq"}):
            assert os.environ["VIG_BIGLA_CHUNK"] == "16" and os.environ["VIG_BIGLA_PATH"] == "seq"
            raise RuntimeError("a failing variant")
    assert os.environ["VIG_BIGLA_CHUNK"] == "32" and "VIG_BIGLA_PATH" not in os.environ


def test_profile_script_imports_its_sibling():
    prof = _load("profile_bigla")
    assert prof.make_inputs.__module__ == prof.env_overrides.__module__ == "bench_bigla"
    assert callable(prof.kernel_table) and callable(prof.main)


def test_write_json_is_atomic_and_leaves_nothing_on_failure(tmp_path):
    bench = _load("bench_bigla")
    path = str(tmp_path / "bigla_gpu.json")
    bench.write_json({"results": {"ViG-T 224": {"ours": {"fwd_ms": 0.25}}}, "complete": False}, path)
    import json
    assert json.load(open(path))["results"]["ViG-T 224"]["ours"]["fwd_ms"] == 0.25
    with pytest.raises(TypeError):
        bench.write_json({"bad": object()}, path)  # not JSON-serialisable
    assert json.load(open(path))["complete"] is False  # the earlier file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bigla_gpu.json"]  # no temp file left
