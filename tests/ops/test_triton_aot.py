"""The Triton kernels compile for sm_90a (H100 / H200) at the launches the launcher makes, on a machine without a
GPU (vig.ops.bigla.triton.aot: triton's compiler and the ptxas it ships). The interpreter tests check the kernels'
numbers but never compile them, so without this a kernel that fails to build for the GPU would pass CI. Each case
also keeps its shared memory within what one program may take (227 KB): more fails at launch, not at compile.

The chunk backward is covered widely: every supported head size, bf16 / fp16 / fp32 with the operand settings the
launcher derives for them, the split launch's two kernels, and the one-launch kernel. The other kernels, which
share its dot and row-sum helpers, are covered at one setting each."""
import re

import pytest
import torch

pytest.importorskip("triton")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
KVS = ((16, 32), (32, 64), (64, 64), (128, 128))


def _aot_or_skip():
    from vig.ops.bigla.triton import aot  # an error in our module fails the test; only a missing toolchain skips
    reason = aot.missing_toolchain()
    if reason:
        pytest.skip(reason)
    return aot


def _chunk_bwd_case(dtype, K, V, mode):
    from vig.ops.bigla.triton.aot import chunk_bwd_launch
    return chunk_bwd_launch(dtype, K, V, mode)


@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("K,V", KVS)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_chunk_backward_compiles_for_sm90(dtype, K, V, mode, monkeypatch):
    aot = _aot_or_skip()
    for knob in ("VIG_BIGLA_BWD_WARPS", "VIG_BIGLA_WARPS", "VIG_BIGLA_CHUNK_BWD", "VIG_BIGLA_CHUNK",
                 "VIG_BIGLA_BWD_PREC", "VIG_BIGLA_STATES", "VIG_BIGLA_BF16_OPS", "VIG_BIGLA_DV_BF16",
                 "VIG_BIGLA_FP32_BWD_PREC"):
        monkeypatch.delenv(knob, raising=False)
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(DTYPES[dtype], K, V, mode)
    compiled, _ = aot.compile_for(chunk_bwd_kernel, consts, options, pointers)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90, compiled.metadata.shared


def test_fp32_chunk_backward_on_tf32x3_compiles_for_sm90(monkeypatch):
    """fp32 inputs' backward on 3xtf32 tensor-core dots, the default (VIG_BIGLA_FP32_BWD_PREC unset)."""
    aot = _aot_or_skip()
    monkeypatch.delenv("VIG_BIGLA_FP32_BWD_PREC", raising=False)
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(torch.float32, 32, 64, 1)
    assert consts["PREC"] == "tf32x3"
    compiled, _ = aot.compile_for(chunk_bwd_kernel, consts, options, pointers)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90


@pytest.mark.parametrize("K,V", KVS[:2])
def test_fp32_chunk_backward_keeps_its_registers(K, V, monkeypatch):
    """Full-precision dots (VIG_BIGLA_FP32_BWD_PREC=ieee) under the launch's .reqntid sent ptxas to 32 registers with
    16-21 KB of spills per thread; config.chunk_bwd_register_cap's .maxnreg 255 keeps ptxas at its full register
    budget."""
    aot = _aot_or_skip()
    for knob in ("VIG_BIGLA_MAXNREG", "VIG_BIGLA_BWD_WARPS", "VIG_BIGLA_WARPS"):
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("VIG_BIGLA_FP32_BWD_PREC", "ieee")
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(torch.float32, K, V, 1)
    assert consts["PREC"] == "ieee" and options["maxnreg"] == 255
    compiled, _ = aot.compile_for(chunk_bwd_kernel, consts, options, pointers)
    assert aot.registers(compiled.asm["cubin"]) >= 128


@pytest.mark.parametrize("mode", [1, 2])
def test_chunk_backward_on_saved_key_states_compiles_for_sm90(mode):
    """The training default at ViG-T/S/B's head dims: the key states the forward saved and the walk's do states
    through two pointers (SPLIT_STATES)."""
    aot = _aot_or_skip()
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(torch.bfloat16, 32, 64, mode)
    compiled, _ = aot.compile_for(chunk_bwd_kernel, {**consts, "SPLIT_STATES": True}, options, pointers)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90


def test_one_launch_chunk_backward_compiles_for_sm90():
    """VIG_BIGLA_SPLIT_EXACT=0: both intra-chunk paths in one kernel, chosen per chunk at run time."""
    aot = _aot_or_skip()
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(torch.bfloat16, 32, 64, 0)
    compiled, _ = aot.compile_for(chunk_bwd_kernel, consts, options, pointers)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90


def _forward_cases():
    """(module, kernel, constexprs, options, pointer dtypes) for the forward kernels and the states walk at bf16
    launches of the models (ViG-T's seq forward and walk, ViG-H stage 1's chunk forward)."""
    from vig.ops.bigla.triton import config
    bf16, f32 = torch.bfloat16, torch.float32
    fwd_prec, bwd_prec = config.dot_precision(bf16), config.dot_precision(bf16, backward=True)
    chunk_fwd = config.chunk_len(16, 32, False, fwd_prec)

    cases = {
        "seq forward": ("_fwd", "bigla_fwd_kernel",
                        dict(K=32, V=64, BT=config.chunk_size(), HAS_INIT=False, PREC=fwd_prec, RAW=True,
                             EXACT_MODE=0),
                        {"num_warps": 2, "maxnreg": 168}, {"init": f32, "flags": torch.int32}),
        "chunk forward": ("_chunk_fwd", "chunk_fwd_kernel",
                          dict(K=16, V=32, C=chunk_fwd, PREC=fwd_prec, RAW=True, SEGMENTS=True),
                          {"num_warps": config.chunk_warps(16, 32, False)}, {"segin": f32, "dec": f32}),
        "states walk": ("_chunk_states", "chunk_states_kernel",  # ViG-T's backward walk with local segments
                        dict(K=32, V=64, C=config.chunk_len(32, 64, True, bwd_prec), PREC=bwd_prec, RAW=True,
                             GRAD=True, HAS_INIT=False, LOCAL=True),
                        {"num_warps": 1}, {"init": f32, "dec": f32, "fin": f32, "tot": f32}),
    }
    # the training default at ViG-T/S/B's head dims (config.save_key_states): the forward stores its key states,
    # the backward's walk takes the do states alone, in one segment
    # (the do-states walk zeroes the chunk backward's int32 exact-list count through fin)
    for name, twin, extra, ptrs in (("seq forward saving key states", "seq forward", {"SAVE_KEYS": True}, {}),
                                    ("do-states walk", "states walk",
                                     {"LOCAL": False, "GRAD_ONLY": True, "CLEAR_COUNT": True},
                                     {"fin": torch.int32})):
        module, kernel, consts, options, pointers = cases[twin]
        cases[name] = (module, kernel, {**consts, **extra}, options, {**pointers, **ptrs})
    return cases


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_seq_backward_at_head_size_128_fits_sm90(dtype, monkeypatch):
    """The seq backward runs by default only at K * V > 64 * 64; at 128 x 128 with half inputs, triton's default
    three stages took more shared memory than an H100 allows (config.seq_bwd_stages)."""
    aot = _aot_or_skip()
    for knob in ("VIG_BIGLA_WARPS", "VIG_BIGLA_BWD_PREC"):
        monkeypatch.delenv(knob, raising=False)
    from vig.ops.bigla.triton import config
    from vig.ops.bigla.triton._bwd import bigla_bwd_kernel
    dt, f32 = DTYPES[dtype], torch.float32
    prec = config.seq_precision(dt, True)
    options = {"num_warps": config.seq_warps(128, 128), "num_stages": config.seq_bwd_stages(128, 128, prec)}
    pointers = {**{n: dt for n in ("q", "k", "v", "do", "dq", "dk", "dv", "gf", "gb")},
                **{n: f32 for n in ("dgf", "dgb", "scr", "init", "tot")}}
    consts = dict(K=128, V=128, BT=config.chunk_size(), HAS_INIT=True, PREC=prec, RAW=dt == torch.bfloat16)
    compiled, _ = aot.compile_for(bigla_bwd_kernel, consts, options, pointers)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90, compiled.metadata.shared


@pytest.mark.parametrize("name", ["seq forward", "seq forward saving key states", "do-states walk", "chunk forward",
                                  "states walk"])
def test_other_kernels_compile_for_sm90(name, monkeypatch):
    aot = _aot_or_skip()
    monkeypatch.delenv("VIG_BIGLA_WARPS", raising=False)
    import importlib
    module, kernel, consts, options, pointers = _forward_cases()[name]
    fn = getattr(importlib.import_module(f"vig.ops.bigla.triton.{module}"), kernel)
    compiled, _ = aot.compile_for(fn, consts, options, pointers)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= aot.MAX_SHARED_SM90, compiled.metadata.shared


_PTX_WRITE = re.compile(r"^\s*(@%p\d+\s+)?(st\.global|atom\.global|red\.global)")


def _lines_before_wait(ptx: str, last: bool = False) -> list[str]:
    """The PTX lines before the first griddepcontrol.wait, or before the last (the main path's, laid out after
    mode 1's listing branch)."""
    body = ptx.splitlines()
    waits = [i for i, line in enumerate(body) if "griddepcontrol.wait" in line]
    return body[:waits[-1 if last else 0]]


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("split_states", [True, False])
@pytest.mark.parametrize("raw", [True, False])
def test_programmatic_chunk_backward_writes_nothing_before_it_waits(mode, split_states, raw):
    """VIG_BIGLA_PDL (config.programmatic_launch): the chunk backward may start while the kernel before it runs, and
    the caching allocator may have handed it memory that kernel still reads, so no global store or atomic may come
    before its first griddepcontrol.wait; the launch option reaches the compiled kernel."""
    aot = _aot_or_skip()
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(torch.bfloat16, 32, 64, mode)
    consts = {**consts, "SPLIT_STATES": split_states, "PDL": True, "RAW": raw}
    compiled, _ = aot.compile_for(chunk_bwd_kernel, consts, {**options, "launch_pdl": True}, pointers)
    assert compiled.metadata.launch_pdl
    ptx = compiled.asm["ptx"]
    assert ptx.count("griddepcontrol.wait") >= 1
    early_writes = [line for line in _lines_before_wait(ptx) if _PTX_WRITE.match(line)]
    assert not early_writes, early_writes[:3]
    # modes 0 / 1 let the exact-list launch after them start early; mode 2 is the last launch
    assert ("griddepcontrol.launch_dependents" in ptx) == (mode != 2)


def test_programmatic_chunk_backward_keeps_the_loads_it_may_do_early():
    """The point of the early start: the first direction's tiles and gates are loaded, and do v^T formed, before the
    wait; with log-space gates its in-chunk pairs' dots too (with gate logits they made ptxas spill, so they wait)."""
    aot = _aot_or_skip()
    from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
    consts, options, pointers = _chunk_bwd_case(torch.bfloat16, 32, 64, 1)
    early_dots = {}
    for raw in (True, False):
        compiled, _ = aot.compile_for(chunk_bwd_kernel, {**consts, "SPLIT_STATES": True, "PDL": True, "RAW": raw},
                                      {**options, "launch_pdl": True}, pointers)
        early = _lines_before_wait(compiled.asm["ptx"], last=True)
        assert sum(" ld.global" in line or "\tld.global" in line for line in early) >= 4
        early_dots[raw] = sum("mma" in line for line in early)
    assert 0 < early_dots[True] < early_dots[False], early_dots


def test_do_states_walk_lets_the_chunk_backward_start():
    aot = _aot_or_skip()
    import importlib
    module, kernel, consts, options, pointers = _forward_cases()["do-states walk"]
    fn = getattr(importlib.import_module(f"vig.ops.bigla.triton.{module}"), kernel)
    with_pdl, _ = aot.compile_for(fn, {**consts, "ALLOW_NEXT": True}, options, pointers)
    without, _ = aot.compile_for(fn, consts, options, pointers)
    assert "griddepcontrol.launch_dependents" in with_pdl.asm["ptx"]
    assert "griddepcontrol" not in without.asm["ptx"]
