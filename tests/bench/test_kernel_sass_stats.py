"""benchmarks/kernel_sass_stats.py on a CPU machine: one kernel compiled for sm_90a with triton's bundled ptxas and
cuobjdump (no GPU needed), the SASS counter on a known snippet, and the launch settings it takes from the
launcher's rules."""
import importlib.util
import json
import os

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def _stats_module():
    spec = importlib.util.spec_from_file_location("kernel_sass_stats", os.path.join(BENCH, "kernel_sass_stats.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tools_or_skip():
    from vig.ops.bigla.triton.aot import missing_toolchain, tool
    reason = missing_toolchain() or (None if os.path.exists(tool(90, "cuobjdump")) else "triton ships no cuobjdump")
    if reason:
        pytest.skip(reason)


def test_sass_counts_on_a_known_snippet():
    stats = _stats_module()
    sass = """
        /*0010*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;   /* 0x000000000c04723c */
        /*0020*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;            /* 0x0000000000007b1d */
        /*0030*/                   SHFL.BFLY PT, R3, R2, 0x1, 0x1f ;       /* 0x0c201f0002037f89 */
        /*0040*/                   LDS.128 R8, [R2] ;                       /* 0x0000000002087984 */
        /*0050*/                   LDSM.16.M88.4 R12, [R3] ;                /* 0x000000000312783b */
        /*0060*/                   STL [R1], R5 ;                           /* 0x0000000501007387 */
        /*0070*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;  /* 0x0000000004187e3c */
        Function : chunk_bwd_kernel
    """
    counts = stats.sass_counts(sass)
    assert counts == {"instructions": 7, "HMMA": 1, "HGMMA": 1, "BAR": 1, "SHFL": 1, "LDS": 1, "STS": 0, "LDL": 0,
                      "STL": 1, "MUFU": 0}


def test_launch_settings_follow_the_launcher(monkeypatch):
    stats = _stats_module()
    monkeypatch.delenv("VIG_BIGLA_MAXNREG", raising=False)
    monkeypatch.delenv("VIG_BIGLA_BWD_WARPS", raising=False)
    consts, options, _ = stats.launch_settings("_chunk_bwd", 32, 64)
    assert (consts["C"], consts["PREC"], consts["EXACT_MODE"], options) == (16, "tf32", 1, {"num_warps": 2})
    monkeypatch.setenv("VIG_BIGLA_BWD_WARPS", "1")  # a knob the launcher reads shows in the preset
    assert stats.launch_settings("_chunk_bwd", 32, 64)[1] == {"num_warps": 1}
    consts, _, _ = stats.launch_settings("_chunk_bwd", 16, 32)
    assert consts["C"] == 32


def test_saved_key_presets_take_the_training_default(monkeypatch):
    """A training step at ViG-T's head dims (config.save_key_states): the forward stores its key states, the walk
    takes the two do states (1,536 walks at ViG-T 224, which keeps 2 warps), the chunk backward reads both."""
    stats = _stats_module()
    for knob in ("VIG_BIGLA_WARPS", "VIG_BIGLA_WALK_WARPS", "VIG_BIGLA_MAXNREG"):
        monkeypatch.delenv(knob, raising=False)
    assert stats.SAVED_KEYS <= set(stats.PRESETS)
    assert stats.launch_settings("_fwd", 32, 64, True)[0]["SAVE_KEYS"]
    assert not stats.launch_settings("_fwd", 32, 64)[0]["SAVE_KEYS"]
    assert stats.launch_settings("_chunk_bwd", 32, 64, True)[0]["SPLIT_STATES"]
    assert "SPLIT_STATES" not in stats.launch_settings("_chunk_bwd", 32, 64)[0]
    consts, options, _ = stats.launch_settings("_chunk_states", 32, 64, True)
    # the do-states walk's 1,536 walks take 1 warp, as the launcher gives them (light walks: 8 an SM)
    assert consts["GRAD_ONLY"] and options == {"num_warps": 1}
    consts, options, _ = stats.launch_settings("_chunk_states", 32, 64)
    assert not consts["GRAD_ONLY"] and options == {"num_warps": 1}


def test_programs_per_sm_follow_cudas_occupancy_rules():
    """ptxas' numbers for ViG-T's do-states walk (session 29): shared memory, not registers, holds the 1-warp walk
    at 11 programs an SM at triton's 3 stages; 2 stages fit the 12 its registers allow."""
    stats = _stats_module()
    assert stats.programs_per_sm(109, 19456, 2) == {
        "by": {"registers": 9, "shared": 11, "warps": 32, "blocks": 32}, "programs": 9}
    assert stats.programs_per_sm(168, 19456, 1)["by"] == {"registers": 12, "shared": 11, "warps": 64, "blocks": 32}
    assert stats.programs_per_sm(166, 13312, 1)["programs"] == 12
    assert stats.programs_per_sm(255, 13312, 2)["programs"] == 4  # the chunk backward
    assert stats.programs_per_sm(32, 0, 1)["programs"] == 32  # the block limit


def test_one_kernel_compiles_for_sm90_without_a_gpu(tmp_path):
    stats = _stats_module()
    _tools_or_skip()
    out = tmp_path / "stats.json"
    report = stats.main(["--presets", "chunk_bwd ViG-H", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    r = report["results"]["chunk_bwd ViG-H"]
    assert r["options"] == {"num_warps": 2} and r["constexprs"]["K"] == 16
    assert 0 < r["registers"] <= 255 and r["spill_store_bytes"] is not None and r["shared_bytes"] > 0
    assert 1 <= r["per_sm_h100"]["programs"] <= 32
    # the program's dots are tensor-core ops, and its two warps meet at barriers
    assert r["sass"]["HMMA"] > 0 and r["sass"]["BAR"] > 0 and r["sass"]["instructions"] > 1000


def test_unknown_preset_is_refused():
    stats = _stats_module()
    with pytest.raises(SystemExit):
        stats.main(["--presets", "chunk_bwd ViG-Z"])
