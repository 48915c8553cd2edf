"""The fused Triton kernels under TRITON_INTERPRET=1 on CPU tensors, against the float64 oracle.

The interpreter must be switched on before triton decorates the kernels, and other tests in the
same pytest worker may already have imported them, so every case runs in one child process
(this file run as a script) that prints its relative errors as JSON.
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse

# (name, B, T, H, K, V, kernel settings (env), gate mode, strided)
SEQ16 = {"VIG_BIGLA_PATH": "seq", "VIG_BIGLA_BT": "16", "VIG_BIGLA_FWD_TILE": "0"}  # the walking seq forward
CHUNK = {"VIG_BIGLA_PATH": "chunk"}
CASES = [
    ("chunk_T5_k16v32_c16", 1, 5, 1, 16, 32, {**CHUNK, "VIG_BIGLA_CHUNK": "16"}, "vig", False),
    ("chunk_T40_k16v32_c16", 1, 40, 2, 16, 32, {**CHUNK, "VIG_BIGLA_CHUNK": "16"}, "vig", True),
    ("chunk_T70_k32v64_c32_strided", 2, 70, 1, 32, 64, {**CHUNK, "VIG_BIGLA_CHUNK": "32"}, "vig", True),
    ("chunk_T130_k32v64_c64", 1, 130, 1, 32, 64, {**CHUNK, "VIG_BIGLA_CHUNK": "64"}, "vig", False),
    ("chunk_T70_k32v64_extreme_c64", 1, 70, 1, 32, 64, {**CHUNK, "VIG_BIGLA_CHUNK": "64"}, "extreme", False),
    ("chunk_T33_k16v32_near_zero_c32", 1, 33, 1, 16, 32, {**CHUNK, "VIG_BIGLA_CHUNK": "32"}, "zero", False),
    ("chunk_T37_hard_reset_c16", 1, 37, 1, 16, 32, {**CHUNK, "VIG_BIGLA_CHUNK": "16"}, "reset", False),
    ("default_T33_k64v64", 1, 33, 1, 64, 64, {}, "vig", False),  # seq forward, chunk backward
    # bf16 inputs and states: also the backward's bf16-operand dots (config.bf16_operands)
    ("chunk_T70_k32v64_bf16_states", 2, 70, 1, 32, 64, {**CHUNK, "VIG_BIGLA_STATES": "bf16"}, "vig", False),
    # ... with dv's dots back on the hi + lo operand split (VIG_BIGLA_DV_BF16=0; the default rounds to bf16)
    ("chunk_T70_k32v64_bf16_states_dv_split", 2, 70, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_STATES": "bf16", "VIG_BIGLA_DV_BF16": "0"}, "vig", False),
    ("chunk_T37_k16v32_expanded_do", 1, 37, 2, 16, 32, {**CHUNK, "VIG_BIGLA_CHUNK": "16"}, "vig", False),
    ("chunk_T70_k32v64_walk_segments_bwd_seq", 1, 70, 2, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "32", "VIG_BIGLA_BWD_SEGMENTS": "seq"}, "vig", True),
    ("chunk_T130_k16v32_walk_segments_c32", 1, 130, 1, 16, 32,
     {**CHUNK, "VIG_BIGLA_CHUNK": "32", "VIG_BIGLA_WALK_SEGMENT": "70"}, "vig", False),
    ("chunk_T70_walk_segments_hard_reset_bwd_seq", 1, 70, 1, 16, 32,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "16", "VIG_BIGLA_BWD_SEGMENTS": "seq"}, "reset",
     False),
    # the forward's walk in local segments (the default when segmented) against the seq path's segment scan,
    # with a short last segment, fp32 and bf16 states
    ("chunk_T130_k32v64_fwd_local_segments_c16", 2, 130, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_FWD_WALK_SEGMENT": "48"}, "vig", True),
    ("chunk_T130_k32v64_fwd_local_segments_bf16_states", 1, 130, 2, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_FWD_WALK_SEGMENT": "32", "VIG_BIGLA_STATES": "bf16"}, "vig",
     False),
    # ... and the backward's (its default too), with fp32 and bf16 states, plain and logit gates
    ("chunk_T130_k32v64_bwd_local_segments_c16", 2, 130, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "48", "VIG_BIGLA_BWD_SEGMENTS": "local"}, "vig",
     True),
    ("chunk_T130_k32v64_bwd_local_segments_bf16_states", 1, 130, 2, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "32", "VIG_BIGLA_BWD_SEGMENTS": "local",
      "VIG_BIGLA_STATES": "bf16"}, "vig", False),
    ("chunk_T70_k16v32_bwd_local_segments_logits_c16", 1, 70, 2, 16, 32,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "16", "VIG_BIGLA_BWD_SEGMENTS": "local"}, "logits",
     False),
    ("chunk_T70_bwd_local_segments_hard_reset", 1, 70, 1, 16, 32,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "16", "VIG_BIGLA_BWD_SEGMENTS": "local"}, "reset",
     False),
    ("chunk_T70_k32v64_fwd_seq_segments", 1, 70, 2, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "32", "VIG_BIGLA_FWD_SEGMENTS": "seq"}, "vig",
     True),
    # the block-pair forward (_fwd_tiles.py): several blocks with a partial last one, one block, strided inputs,
    # bf16, gate logits, and gates that send the diagonal blocks down the exact path or cut every pair across
    ("tile_T37_k16v32_bm16_strided", 1, 37, 2, 16, 32, {"VIG_BIGLA_FWD_TILE": "16"}, "vig", True),
    ("tile_T70_k32v64_bm16", 2, 70, 1, 32, 64, {"VIG_BIGLA_FWD_TILE": "16"}, "vig", False),
    ("tile_T65_k16v32_bm32", 1, 65, 1, 16, 32, {"VIG_BIGLA_FWD_TILE": "32"}, "vig", False),
    ("tile_T17_k32v64_bm64", 1, 17, 1, 32, 64, {"VIG_BIGLA_FWD_TILE": "64"}, "vig", False),
    ("tile_T37_k32v64_bf16_bm16", 1, 37, 2, 32, 64, {"VIG_BIGLA_FWD_TILE": "16"}, "vig", False),
    ("tile_T70_k16v32_extreme_bm16", 1, 70, 1, 16, 32, {"VIG_BIGLA_FWD_TILE": "16"}, "extreme", False),
    ("tile_T37_hard_reset_bm16", 1, 37, 1, 16, 32, {"VIG_BIGLA_FWD_TILE": "16"}, "reset", False),
    ("tile_T33_near_zero_bm16", 1, 33, 1, 16, 32, {"VIG_BIGLA_FWD_TILE": "16"}, "zero", False),
    ("tile_T40_k32v64_logits_strong_bm16_strided", 1, 40, 2, 32, 64, {"VIG_BIGLA_FWD_TILE": "16"}, "logits_strong",
     True),
    ("tile_T49_k16v32_default_bm64", 1, 49, 2, 16, 32, {}, "logits", True),  # the default at ViG-H's last stage
    ("tile_T49_k16v32_hard_reset_default_bm64", 1, 49, 1, 16, 32, {}, "reset", False),  # its exact path
    ("seq_T5_k16v32", 1, 5, 1, 16, 32, SEQ16, "vig", False),
    # bf16 inputs: the seq forward's bf16 dots (the default for bf16)
    ("seq_T37_k32v64_bf16_fwd_dots", 1, 37, 2, 32, 64, SEQ16, "vig", True),
    ("seq_T17_k32v64_strided", 2, 17, 1, 32, 64, SEQ16, "vig", True),
    ("seq_T37_k32v64_bf16_fp32_scratch", 1, 37, 2, 32, 64, {**SEQ16, "VIG_BIGLA_FWD_SCRATCH": "fp32"}, "vig", False),
    ("seq_long_T33_k16v32_seg16", 1, 33, 2, 16, 32, {**SEQ16, "VIG_BIGLA_SEGMENT": "16"}, "vig", True),
    ("seq_long_T33_k32v64_seg16", 1, 33, 1, 32, 64, {**SEQ16, "VIG_BIGLA_SEGMENT": "16"}, "vig", False),
    ("seq_T17_extreme_gates", 1, 17, 1, 16, 32, SEQ16, "extreme", False),
    ("seq_T37_hard_reset", 1, 37, 1, 16, 32, SEQ16, "reset", False),
    ("seq_T37_k16v32_expanded_do", 1, 37, 2, 16, 32, SEQ16, "vig", False),
    ("seq_long_T37_hard_reset_seg16", 1, 37, 1, 16, 32, {**SEQ16, "VIG_BIGLA_SEGMENT": "16"}, "reset", False),
    ("seq_long_T33_near_zero_gates", 1, 33, 1, 16, 32, {**SEQ16, "VIG_BIGLA_SEGMENT": "16"}, "zero", False),
    ("seq_long_T65_k16v32_chunk32", 1, 65, 1, 16, 32,
     {"VIG_BIGLA_PATH": "seq", "VIG_BIGLA_BT": "32", "VIG_BIGLA_SEGMENT": "32"}, "vig", True),
    # gate logits (bigla's gate_logit_normalizer): logsigmoid in the kernels, gradients of the logits
    ("chunk_T40_k16v32_logits_c16", 1, 40, 2, 16, 32, {**CHUNK, "VIG_BIGLA_CHUNK": "16"}, "logits", True),
    ("chunk_T70_k32v64_logits_strong_walk_segments", 1, 70, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "32"}, "logits_strong", False),
    # bf16 logits in, bf16 logit gradients out; fp32 states, because under the interpreter bf16 inputs
    # already cost 2x the rounding floor (o: 3.3e-3) and bf16 states on top reach 6e-3 on dg here
    ("chunk_T70_k32v64_logits_bf16_io", 2, 70, 1, 32, 64, {**CHUNK, "VIG_BIGLA_STATES": "fp32"}, "logits", False),
    ("default_T33_k64v64_logits", 1, 33, 1, 64, 64, {}, "logits_strong", False),
    ("seq_T17_k32v64_logits_strided", 2, 17, 1, 32, 64, SEQ16, "logits", True),
    ("seq_long_T37_k16v32_logits_strong_seg16", 1, 37, 1, 16, 32, {**SEQ16, "VIG_BIGLA_SEGMENT": "16"},
     "logits_strong", False),
    # the chunk backward as one launch with both intra-chunk paths compiled in (VIG_BIGLA_SPLIT_EXACT=0; the
    # default runs fast-path chunks, then exact-path ones): a hard reset and strong logits put some chunks on
    # each path, mild gates all on the fast one
    ("chunk_T37_hard_reset_c16_one_launch", 1, 37, 1, 16, 32,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_SPLIT_EXACT": "0"}, "reset", False),
    ("chunk_T70_k32v64_logits_strong_one_launch", 1, 70, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_SPLIT_EXACT": "0"}, "logits_strong", True),
    ("chunk_T70_k32v64_bf16_states_one_launch", 2, 70, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_STATES": "bf16", "VIG_BIGLA_SPLIT_EXACT": "0"}, "vig", False),
    # the seq forward as two launches: every segment on the fast path, then the flagged ones with both paths
    ("seq_T37_hard_reset_split_exact", 1, 37, 1, 16, 32, {**SEQ16, "VIG_BIGLA_SPLIT_EXACT": "fwd"}, "reset", False),
    ("seq_long_T70_k32v64_logits_strong_seg16_split_exact", 1, 70, 2, 32, 64,
     {**SEQ16, "VIG_BIGLA_SEGMENT": "16", "VIG_BIGLA_SPLIT_EXACT": "fwd"}, "logits_strong", True),
    ("seq_T40_k16v32_split_exact", 1, 40, 2, 16, 32, {**SEQ16, "VIG_BIGLA_SPLIT_EXACT": "1"}, "vig", False),
    # walk segments of 48 tokens scanned in 32-token tiles: a segment ends inside a tile, whose padded rows
    # must not decay (a logit of 0 read there is a real decay unless masked)
    ("chunk_T130_k16v32_logits_segment_inside_tile", 1, 130, 1, 16, 32,
     {**CHUNK, "VIG_BIGLA_CHUNK": "16", "VIG_BIGLA_WALK_SEGMENT": "48", "VIG_BIGLA_BT": "32"}, "logits", False),
]
# the forward's key states saved for the backward (the default where config.save_key_states applies: the seq forward,
# the chunk backward with 16-token chunks at K, V = 32, 64), whose walk then takes the do states alone: strided
# inputs, bf16 inputs and states, hard resets, strong logits on the exact paths, a broadcast do; and the same
# shapes with VIG_BIGLA_SAVE_KEY_STATES=0, which walks all four states in the backward
SAVE_KEYS = {"VIG_BIGLA_SAVE_KEY_STATES": "1"}
CASES += [
    ("savekeys_T37_k32v64_strided", 2, 37, 1, 32, 64, SAVE_KEYS, "vig", True),
    ("savekeys_T70_k32v64_bf16_states", 2, 70, 1, 32, 64, SAVE_KEYS, "vig", False),
    ("savekeys_T37_k32v64_hard_reset", 1, 37, 2, 32, 64, SAVE_KEYS, "reset", False),
    ("savekeys_T40_k32v64_logits_strong", 1, 40, 2, 32, 64, SAVE_KEYS, "logits_strong", True),
    ("savekeys_T17_k32v64_expanded_do", 1, 17, 2, 32, 64, SAVE_KEYS, "vig", False),
    ("fourwalks_T37_k32v64_strided", 2, 37, 1, 32, 64, {"VIG_BIGLA_SAVE_KEY_STATES": "0"}, "vig", True),
    ("fourwalks_T40_k32v64_logits_strong", 1, 40, 2, 32, 64, {"VIG_BIGLA_SAVE_KEY_STATES": "0"}, "logits_strong",
     False),
]
# the chunk backward's in-chunk scores (config.bwd_scores_mode): the forward direction's P carried as bf16, and P's
# dot on bf16 operands as well, on the models' route (saved key states) and the four-walk one
BWD_P_CASES = {"savekeys_T70_k32v64_bf16_states_p_bf16": 2, "chunk_T70_k32v64_bf16_states_p_carry": 1}
CASES += [
    ("savekeys_T70_k32v64_bf16_states_p_bf16", 2, 70, 1, 32, 64, {**SAVE_KEYS, "VIG_BIGLA_BWD_P": "bf16"}, "vig",
     False),
    ("chunk_T70_k32v64_bf16_states_p_carry", 2, 70, 1, 32, 64,
     {**CHUNK, "VIG_BIGLA_STATES": "bf16", "VIG_BIGLA_BWD_P": "carry"}, "vig", False),
]
# the cases whose chunk backward rounds dv's operands to bf16: bf16 inputs and states, VIG_BIGLA_DV_BF16 on
DV_BF16_CASES = {"chunk_T70_k32v64_bf16_states", "tile_T37_k32v64_bf16_bm16", "chunk_T70_k32v64_bf16_states_one_launch",
                 "savekeys_T70_k32v64_bf16_states",
                 "chunk_T130_k32v64_fwd_local_segments_bf16_states",
                 "chunk_T130_k32v64_bwd_local_segments_bf16_states", *BWD_P_CASES}
# gate mode -> gate_logit_normalizer (the gates are then logits)
LOGIT_NORMALIZERS = {"logits": 16.0, "logits_strong": 1.0}
KNOBS = ("VIG_BIGLA_PATH", "VIG_BIGLA_BT", "VIG_BIGLA_SEGMENT", "VIG_BIGLA_CHUNK", "VIG_BIGLA_CHUNK_BWD",
         "VIG_BIGLA_STATES", "VIG_BIGLA_WALK_SEGMENT", "VIG_BIGLA_PREC", "VIG_BIGLA_BWD_PREC", "VIG_BIGLA_BF16_OPS",
         "VIG_BIGLA_DV_BF16", "VIG_BIGLA_SPLIT_EXACT", "VIG_BIGLA_BWD_WARPS", "VIG_BIGLA_WALK_WARPS",
         "VIG_BIGLA_FWD_SEGMENTS", "VIG_BIGLA_FWD_WALK_SEGMENT", "VIG_BIGLA_BWD_SEGMENTS", "VIG_BIGLA_FWD_SCRATCH",
         "VIG_BIGLA_FWD_TILE", "VIG_BIGLA_HALF_SUM_REF", "VIG_BIGLA_BWD_HALF_SUM_REF", "VIG_BIGLA_FP32_BWD_PREC",
         "VIG_BIGLA_SAVE_KEY_STATES", "VIG_BIGLA_WALK_STAGES", "VIG_BIGLA_BWD_P")
INTERPRETER_UNSET_ENV = KNOBS  # conftest.interpreted: the child starts from the defaults


def _dtype(case):  # bf16 inputs where the case is about bf16 storage, fp32 (tolerance 1e-5) elsewhere
    return torch.bfloat16 if "_bf16_" in case else torch.float32


def _tolerance(case):
    return 5e-3 if _dtype(case) == torch.bfloat16 else 1e-5
NAMES = ("o", "dq", "dk", "dv", "dg_fwd", "dg_bwd")


def _inputs(B, T, H, K, V, mode, strided, gen):
    if strided:  # q, k, v as slices of one qkv projection, gates as halves of one gate projection
        qkv = torch.randn(B, T, H, 2 * K + V, generator=gen)
        q, k, v = qkv[..., :K], qkv[..., K:2 * K], qkv[..., 2 * K:]
        gg = F.logsigmoid(torch.randn(B, T, 2, H, K, generator=gen)) / 16
        gf, gb = gg[:, :, 0], gg[:, :, 1]
    else:
        q, k = torch.randn(2, B, T, H, K, generator=gen)
        v = torch.randn(B, T, H, V, generator=gen)
        gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, generator=gen) * 2) / 2
    if mode in LOGIT_NORMALIZERS:  # logits with both tails: +30 (decay ~1 - 1e-13) and -30 (strong)
        x = torch.randn(B, T, 2, H, K, generator=gen) * 2
        x[:, ::5, 0, :, 0], x[:, 1::4, 1, :, -1] = 30.0, -30.0
        if strided:  # halves of one gate projection, read in place
            return q, k, v, x[:, :, 0], x[:, :, 1]
        return q, k, v, x[:, :, 0].contiguous(), x[:, :, 1].contiguous()
    if mode == "extreme":
        gf, gb = torch.full_like(q, -20.0), torch.full_like(q, -20.0)
    elif mode == "zero":
        gf, gb = torch.full_like(q, -1e-6), torch.full_like(q, -1e-6)
    elif mode == "reset":  # a hard reset: g = -inf cuts every pair across that token
        gf, gb = gf.clone(), gb.clone()
        gf[:, T // 3], gb[:, T // 2] = float("-inf"), float("-inf")
    return q, k, v, gf, gb


CLEARED_COUNT_ARG = 9  # chunk_states_kernel's `fin`, the chunk backward's exact-list count under CLEAR_COUNT


def run_cases():
    from vig.ops.bigla.gates import log_decays
    from vig.ops.bigla.naive import bigla_naive
    from vig.ops.bigla.triton import bigla_triton, launch
    walks = []  # one entry per stored states walk the forward launched (do is None there)
    stored_walk = launch._chunk_states

    light_expected = []  # per walk: the do-states walk, or a backward walk of states no larger than ViG-H's 16 x 32

    def counting_walk(q, k, v, gf, gb, do, *rest, **kwargs):
        walks.append(do is None)
        light_expected.append(kwargs.get("grad_only", False) or (do is not None and k.shape[-1] * v.shape[-1] <= 512))
        return stored_walk(q, k, v, gf, gb, do, *rest, **kwargs)

    launch._chunk_states = counting_walk
    light_rules = []  # `light` of every walk_warps call, against light_expected
    stored_rule = launch.walk_warps

    def recording_rule(n_walks, sm_count, warps, light=False):
        light_rules.append(light)
        return stored_rule(n_walks, sm_count, warps, light)

    launch.walk_warps = recording_rule
    launched = []  # compile-time settings of every chunk-states / chunk-backward launch

    class Recorder:
        def __init__(self, name):
            self.name, self.kernel = name, getattr(launch, name)

        def __getitem__(self, grid):
            def run(*args, **kwargs):
                launched.append({"kernel": self.name,
                                 **{k: kwargs[k] for k in ("DV_BF16", "EXACT_MODE", "BM", "SAVE_KEYS", "GRAD_ONLY",
                                                           "SPLIT_STATES", "P_MODE") if k in kwargs}})
                if not kwargs.get("CLEAR_COUNT"):
                    return self.kernel[grid](*args, **kwargs)
                count = args[CLEARED_COUNT_ARG]  # poisoned, so only the walk's own zeroing passes
                count[0] = 99
                out = self.kernel[grid](*args, **kwargs)
                launched[-1]["count_after"] = int(count[0])
                return out
            return run

    launch.chunk_states_kernel = Recorder("chunk_states_kernel")
    launch.bigla_fwd_kernel = Recorder("bigla_fwd_kernel")
    launch.bigla_fwd_tiles_kernel = Recorder("bigla_fwd_tiles_kernel")
    launch.chunk_bwd_kernel = Recorder("chunk_bwd_kernel")
    results = {}
    for name, B, T, H, K, V, knobs, mode, strided in CASES:
        for knob in KNOBS:
            os.environ.pop(knob, None)
        os.environ.update(knobs)
        gen = torch.Generator().manual_seed(T * 7 + K)
        xs = [x.to(_dtype(name)).requires_grad_() for x in _inputs(B, T, H, K, V, mode, strided, gen)]
        do = torch.randn(B, T, H, V, generator=gen).to(_dtype(name))
        if name.endswith("_expanded_do"):  # the grad of o.sum(): one value broadcast, every stride 0
            do = torch.ones(1, dtype=do.dtype).expand(B, T, H, V)
        ref_in = [x.detach().double().requires_grad_() for x in xs]
        gnorm = LOGIT_NORMALIZERS.get(mode)
        ref_gates = [log_decays(g, gnorm) for g in ref_in[3:]] if gnorm else ref_in[3:]
        ref = bigla_naive(*ref_in[:3], *ref_gates, K ** -0.5)
        ref_grads = torch.autograd.grad(ref, ref_in, do.double())
        walks.clear()
        launched.clear()
        light_rules.clear()
        light_expected.clear()
        o = bigla_triton(*xs, K ** -0.5, gate_logit_normalizer=gnorm)
        grads = torch.autograd.grad(o, xs, do)
        errs = {"fwd_state_walks": sum(walks),
                "bwd_exact_modes": [k["EXACT_MODE"] for k in launched if k["kernel"] == "chunk_bwd_kernel"],
                "fwd_exact_modes": [k["EXACT_MODE"] for k in launched if k["kernel"] == "bigla_fwd_kernel"],
                "fwd_tile_rows": [k["BM"] for k in launched if k["kernel"] == "bigla_fwd_tiles_kernel"],
                "dv_bf16": int(any(k.get("DV_BF16") for k in launched)),
                "bwd_p_modes": [k["P_MODE"] for k in launched if k["kernel"] == "chunk_bwd_kernel"],
                "saved_keys": [k["kernel"] for k in launched if k.get("SAVE_KEYS") or k.get("GRAD_ONLY")
                               or k.get("SPLIT_STATES")],
                "counts_cleared": [k["count_after"] for k in launched if "count_after" in k],
                "light_walk_rules": [list(light_rules), list(light_expected)]}
        for n, a, b in zip(NAMES, (o, *grads), (ref, *ref_grads)):
            errs[n] = rel_rmse(a, b)
        results[name] = errs
    return results


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_interpreted_kernels_match_oracle(interpreted, case):
    errs, tol = interpreted[case], _tolerance(case)
    for n in NAMES:
        assert errs[n] <= tol, f"{case}: {n} relative RMSE {errs[n]:.2e} > {tol} ({errs})"
    # the opt-in settings reach the kernels (their results match the default's too closely to tell)
    assert errs["dv_bf16"] == int(case in DV_BF16_CASES), errs
    assert set(errs["bwd_p_modes"]) <= {BWD_P_CASES.get(case, 0)}, errs
    if case in BWD_P_CASES:
        assert errs["bwd_p_modes"] == [BWD_P_CASES[case]] * 2, errs
    # the key states saved by the one forward launch, a do-states walk, and both split backward launches
    saved = ["bigla_fwd_kernel", "chunk_states_kernel", "chunk_bwd_kernel", "chunk_bwd_kernel"]
    assert errs["saved_keys"] == (saved if case.startswith("savekeys_") else []), errs
    # that do-states walk zeroed the split backward's exact-list count (no memset launch)
    assert errs["counts_cleared"] == ([0] if case.startswith("savekeys_") else []), errs
    # every walk asked for the warp rule of its kind (light: the do-states walk, ViG-H-sized backward walks)
    asked, expected = errs["light_walk_rules"]
    assert asked == expected and (expected == [True] if case.startswith("savekeys_") else True), errs
    if case.startswith("chunk_"):  # the split backward (default) launches both halves, else one with both paths
        assert errs["bwd_exact_modes"] == ([0] if case.endswith("_one_launch") else [1, 2]), errs
    if case.startswith("seq_"):  # likewise the seq forward
        assert errs["fwd_exact_modes"] == ([1, 2] if "_split_exact" in case else [0]), errs
        assert errs["fwd_tile_rows"] == [], errs
    if case.startswith("tile_"):  # one block-pair launch with the asked block rows, and nothing else forward
        assert errs["fwd_tile_rows"] == [int(case.rsplit("_bm", 1)[1].split("_")[0])], errs
        assert errs["fwd_exact_modes"] == [] and errs["fwd_state_walks"] == 0, errs
    if case.startswith("chunk_"):  # the chunk forward stores one states walk
        assert errs["fwd_state_walks"] == 1, errs


def check_switch(monkeypatch, name, read, default, bad="yes"):
    """An on/off knob (_common.switch) as read() sees it: `default` unset, on at 1, off at 0, and a ValueError
    naming it for any other value."""
    monkeypatch.delenv(name, raising=False)
    assert read() == default
    monkeypatch.setenv(name, "1")
    assert read()
    monkeypatch.setenv(name, "0")
    assert not read()
    monkeypatch.setenv(name, bad)
    with pytest.raises(ValueError, match=name):
        read()
    monkeypatch.delenv(name)


def run_knob_child(knobs, case_names, read_flags):
    """The __main__ of a module whose cases run with import-time knobs (a child process of its own): the kernels
    defined with knobs {name: value}, then its cases' errors as JSON, each with {flag: read()} for read_flags
    {flag: read}, so the parent sees the settings the kernels took."""
    os.environ.update(knobs)
    torch.set_num_threads(1)
    CASES[:] = [c for c in CASES if c[0] in case_names]
    results = run_cases()
    for errs in results.values():
        errs.update({flag: read() for flag, read in read_flags.items()})
    print(json.dumps(results))


def assert_knob_case(errs, case, expected):
    """A run_knob_child case: the kernels took the knobs' settings (expected {flag: value}), and every error is
    within the case's tolerance."""
    assert {flag: errs[flag] for flag in expected} == expected, errs
    tol = _tolerance(case)
    for n in NAMES:
        assert errs[n] <= tol, f"{case}: {n} relative RMSE {errs[n]:.2e} > {tol} ({errs})"


def test_kernel_settings_are_checked(monkeypatch):
    from vig.ops.bigla.triton.config import (chunk_bwd_warps, chunk_len, chunk_size, dot_precision, dv_bf16,
                                             kernel_path, local_segments, split_exact, state_dtype,
                                             walk_segment_chunks)
    q, v = torch.zeros(1, 8, 1, 32), torch.zeros(1, 8, 1, 64)
    assert not split_exact("fwd") and split_exact("bwd")
    for knob, fwd, bwd in (("0", False, False), ("1", True, True), ("fwd", True, False), ("bwd", False, True),
                           ("fwd,bwd", True, True)):
        monkeypatch.setenv("VIG_BIGLA_SPLIT_EXACT", knob)
        assert (split_exact("fwd"), split_exact("bwd")) == (fwd, bwd), knob
    assert chunk_bwd_warps(2) == 2
    monkeypatch.setenv("VIG_BIGLA_BWD_WARPS", "4")
    assert chunk_bwd_warps(2) == 4
    monkeypatch.setenv("VIG_BIGLA_BWD_WARPS", "1")
    assert chunk_bwd_warps(2) == 1
    for bad in ("3", "0", "one"):
        monkeypatch.setenv("VIG_BIGLA_BWD_WARPS", bad)
        with pytest.raises(ValueError, match="VIG_BIGLA_BWD_WARPS"):
            chunk_bwd_warps(2)
    monkeypatch.delenv("VIG_BIGLA_BWD_WARPS")
    monkeypatch.setenv("VIG_BIGLA_SPLIT_EXACT", "2")
    with pytest.raises(ValueError, match="VIG_BIGLA_SPLIT_EXACT"):
        split_exact("bwd")
    monkeypatch.delenv("VIG_BIGLA_SPLIT_EXACT")
    assert dv_bf16()
    monkeypatch.setenv("VIG_BIGLA_DV_BF16", "0")
    assert not dv_bf16()
    monkeypatch.setenv("VIG_BIGLA_DV_BF16", "yes")
    with pytest.raises(ValueError, match="VIG_BIGLA_DV_BF16"):
        dv_bf16()
    monkeypatch.setenv("VIG_BIGLA_BT", "24")
    with pytest.raises(ValueError, match="VIG_BIGLA_BT"):
        chunk_size()
    monkeypatch.setenv("VIG_BIGLA_CHUNK", "48")
    with pytest.raises(ValueError, match="VIG_BIGLA_CHUNK"):
        chunk_len(32, 64)
    monkeypatch.setenv("VIG_BIGLA_CHUNK", "64")
    with pytest.raises(ValueError, match="64-token backward chunk with bf16"):
        chunk_len(32, 64, backward=True, prec="bf16")
    monkeypatch.setenv("VIG_BIGLA_STATES", "fp16")
    with pytest.raises(ValueError, match="VIG_BIGLA_STATES"):
        state_dtype(torch.bfloat16)
    monkeypatch.setenv("VIG_BIGLA_WALK_SEGMENT", "8")
    with pytest.raises(ValueError, match="VIG_BIGLA_WALK_SEGMENT"):
        walk_segment_chunks(100, 16, 48, 132)
    monkeypatch.setenv("VIG_BIGLA_WALK_SEGMENT", "48")
    assert walk_segment_chunks(100, 16, 48, 132) == 3 and walk_segment_chunks(20, 16, 48, 132) == 2
    monkeypatch.delenv("VIG_BIGLA_WALK_SEGMENT")
    # the backward's local walks: 1024-token segments while they fill fewer than 4 x the SMs
    assert walk_segment_chunks(100, 16, 48, 132) == 7
    assert walk_segment_chunks(16384, 16, 48, 132) == 64 and walk_segment_chunks(2048, 16, 48, 132) == 64
    assert walk_segment_chunks(4096, 16, 192, 132) == 64  # ViG-T 1024's backward, bs 16: 4 segments
    assert walk_segment_chunks(3136, 32, 1536, 132) == 98  # ViG-H-T stage 1, bs 128: no split
    monkeypatch.setenv("VIG_BIGLA_BWD_SEGMENTS", "seq")  # the seq route's rule: fewer walks than half the SMs
    assert walk_segment_chunks(16384, 16, 48, 132) == 64  # few long walks: 1024-token segments
    assert walk_segment_chunks(4096, 16, 192, 132) == 256 and walk_segment_chunks(2048, 16, 48, 132) == 128
    assert walk_segment_chunks(4096, 64, 96, 132) == 64
    assert walk_segment_chunks(4096, 64, 64, 132) == 16
    monkeypatch.delenv("VIG_BIGLA_BWD_SEGMENTS")
    # the forward's local segments: split while the walks fill fewer than 4 x the SMs, >= 16 chunks each
    assert walk_segment_chunks(4096, 64, 96, 132, forward=True) == 16  # ViG-T 1024, bs 16
    assert walk_segment_chunks(16384, 64, 96, 132, forward=True) == 43  # ViG-T 2048, bs 16: 6 segments
    assert walk_segment_chunks(3136, 64, 768, 132, forward=True) == 49  # ViG-H-T stage 1, bs 128: no split
    assert walk_segment_chunks(512, 64, 2, 132, forward=True) == 8  # shorter than one segment
    monkeypatch.setenv("VIG_BIGLA_FWD_SEGMENTS", "seq")  # then the seq route's rule
    assert walk_segment_chunks(4096, 64, 96, 132, forward=True) == 64
    monkeypatch.setenv("VIG_BIGLA_FWD_WALK_SEGMENT", "512")
    assert walk_segment_chunks(4096, 64, 96, 132, forward=True) == 8 and walk_segment_chunks(4096, 64, 96, 132) == 16
    monkeypatch.setenv("VIG_BIGLA_FWD_WALK_SEGMENT", "40")
    with pytest.raises(ValueError, match="VIG_BIGLA_FWD_WALK_SEGMENT"):
        walk_segment_chunks(4096, 64, 96, 132, forward=True)
    monkeypatch.delenv("VIG_BIGLA_FWD_WALK_SEGMENT")
    from vig.ops.bigla.triton._common import _fast_log2_setting
    check_switch(monkeypatch, "VIG_BIGLA_FAST_LOG2", _fast_log2_setting, True, bad="fast")
    monkeypatch.setenv("VIG_BIGLA_FWD_SEGMENTS", "scan")
    with pytest.raises(ValueError, match="VIG_BIGLA_FWD_SEGMENTS"):
        local_segments(forward=True)
    assert local_segments(forward=False)  # the backward's default too
    monkeypatch.setenv("VIG_BIGLA_BWD_SEGMENTS", "seq")
    assert not local_segments(forward=False)
    monkeypatch.setenv("VIG_BIGLA_BWD_SEGMENTS", "1")
    with pytest.raises(ValueError, match="VIG_BIGLA_BWD_SEGMENTS"):
        local_segments(forward=False)
    from vig.ops.bigla.triton.config import fwd_scratch_dtype
    assert fwd_scratch_dtype(torch.bfloat16) == torch.bfloat16 and fwd_scratch_dtype(torch.float32) == torch.float32
    assert fwd_scratch_dtype(torch.float16) == torch.float32  # fp16's range: the term is stored before the scale
    monkeypatch.setenv("VIG_BIGLA_FWD_SCRATCH", "fp32")
    assert fwd_scratch_dtype(torch.bfloat16) == torch.float32
    monkeypatch.setenv("VIG_BIGLA_FWD_SCRATCH", "bf16")
    with pytest.raises(ValueError, match="VIG_BIGLA_FWD_SCRATCH"):
        fwd_scratch_dtype(torch.bfloat16)
    monkeypatch.setenv("VIG_BIGLA_PATH", "fast")
    with pytest.raises(ValueError, match="VIG_BIGLA_PATH"):
        kernel_path(q, v)
    monkeypatch.setenv("VIG_BIGLA_BWD_PREC", "fp8")
    with pytest.raises(ValueError, match="VIG_BIGLA_BWD_PREC"):
        dot_precision(torch.bfloat16, backward=True)
    monkeypatch.delenv("VIG_BIGLA_FP32_BWD_PREC", raising=False)  # fp32's backward only; its forward stays ieee
    assert (dot_precision(torch.float32, backward=True), dot_precision(torch.float32)) == ("tf32x3", "ieee")
    monkeypatch.setenv("VIG_BIGLA_FP32_BWD_PREC", "ieee")
    assert (dot_precision(torch.float32, backward=True), dot_precision(torch.float32)) == ("ieee", "ieee")
    monkeypatch.setenv("VIG_BIGLA_FP32_BWD_PREC", "tf32")
    with pytest.raises(ValueError, match="VIG_BIGLA_FP32_BWD_PREC"):
        dot_precision(torch.float32, backward=True)


def test_seq_forward_choices(monkeypatch):
    """The seq forward's measured choices: the block-pair forward for one 64-row block at K, V = 16, 32, and the
    warps and register caps of the launch table (bf16 dots): the choice with the fewest costed waves."""
    from vig.ops.bigla.triton.config import fwd_tile_rows, seq_fwd_launch
    for knob in ("VIG_BIGLA_FWD_TILE", "VIG_BIGLA_WARPS", "VIG_BIGLA_MAXNREG", "TRITON_INTERPRET"):
        monkeypatch.delenv(knob, raising=False)
    assert fwd_tile_rows(49, 16, 32) == 64 and fwd_tile_rows(64, 16, 32) == 64
    assert fwd_tile_rows(65, 16, 32) == 0 and fwd_tile_rows(196, 16, 32) == 0 and fwd_tile_rows(49, 32, 64) == 0
    monkeypatch.setenv("VIG_BIGLA_FWD_TILE", "32")
    assert fwd_tile_rows(196, 32, 64) == 32 and fwd_tile_rows(257, 32, 64) == 0  # never past SHORT_T
    monkeypatch.setenv("VIG_BIGLA_FWD_TILE", "0")
    assert fwd_tile_rows(49, 16, 32) == 0
    monkeypatch.setenv("VIG_BIGLA_FWD_TILE", "48")
    with pytest.raises(ValueError, match="VIG_BIGLA_FWD_TILE must be"):
        fwd_tile_rows(49, 16, 32)

    def walk(programs, K=32, V=64, prec="bf16", kernel="walk"):
        launch = seq_fwd_launch(kernel, K, V, programs, 132, prec)
        return launch["num_warps"], launch.get("maxnreg")
    # 132 SMs, 32, 64: 3 / 4 / 6 programs per SM on 4 warps / 2 / 2 capped at 168, waves cost 1 / 1.15 / 1.65
    assert walk(768) == (2, 168)  # ViG-T 224: one wave of capped 2-warp programs against 2 of 4-warp ones
    assert walk(1536) == (2, 168)  # ViG-S/B 224: 2 * 1.65 against 3 * 1.15 and 4
    assert walk(1000) == (2, None)  # 2 * 1.15 against 3 and 2 * 1.65
    assert walk(200) == (4, None)  # one wave each: the cheapest wave
    assert walk(1536, 16, 32) == (2, None)  # ViG-H-T stage 3: 2 * 1.21 against 3
    assert walk(300, 16, 32) == (4, None)
    assert walk(1536, prec="tf32") == (4, None)  # fp32 dots: not measured
    assert walk(1536, 64, 64) == (4, None)  # no table: seq_warps
    assert walk(3072, 16, 32, kernel="block64") == (2, None)  # ViG-H-T stage 4: 6 * 1.49 against 12
    assert walk(200, 16, 32, kernel="block64") == (4, None)
    assert walk(3072, 32, 64, kernel="block64") == (4, None)
    assert walk(3072, 16, 32, kernel="block32") == (4, None)  # other block rows: not measured
    assert walk(1536, kernel=None) == (4, None)  # the walk over segments: not measured
    monkeypatch.setenv("VIG_BIGLA_WARPS", "8")
    assert walk(1536) == (8, None)
    monkeypatch.delenv("VIG_BIGLA_WARPS")
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "fwd=128")
    assert walk(1536) == (4, 128)  # a cap asked for: seq_warps with it
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "fwd=999")
    with pytest.raises(ValueError, match="VIG_BIGLA_MAXNREG"):
        walk(1536)


@pytest.mark.parametrize("grad", [False, True])
def test_segment_scan_keeps_seq_dots_under_every_chunk_setting(grad, monkeypatch):
    """The chunk path's segmented walk hands the seq path's default dots (3xtf32 in a half-precision
    backward) to its segment scan, whatever the chunk dots or the precision knobs say (the opt-in bf16
    knob once made the scan raise). The walks take that scan only with VIG_BIGLA_FWD_SEGMENTS / _BWD_SEGMENTS=seq."""
    from vig.ops.bigla.triton import launch
    seen = {}
    monkeypatch.setenv("VIG_BIGLA_FWD_SEGMENTS", "seq")
    monkeypatch.setenv("VIG_BIGLA_BWD_SEGMENTS", "seq")

    def record(*args, **kwargs):
        seen["prec"] = kwargs["prec"]
        raise InterruptedError  # stop before any kernel launch

    monkeypatch.setattr(launch, "_seg_states", record)
    monkeypatch.setenv("VIG_BIGLA_WALK_SEGMENT", "32")
    monkeypatch.setenv("VIG_BIGLA_BWD_PREC", "bf16")
    q, k, gf, gb = torch.zeros(4, 1, 70, 1, 32, dtype=torch.bfloat16)
    v = do = torch.zeros(1, 70, 1, 64, dtype=torch.bfloat16)
    for prec in ("bf16", "tf32"):
        with pytest.raises(InterruptedError):
            launch._chunk_states(q, k, v, gf, gb, do if grad else None, 16, 5, 1.0, prec, 1, None)
        assert seen.pop("prec") == ("tf32x3" if grad else "tf32"), prec


def test_default_kernel_settings(monkeypatch):
    from vig.ops.bigla.triton.config import (chunk_len, chunk_warps, dot_precision, kernel_path, light_walks,
                                             state_dtype, walk_warps)
    for knob in KNOBS:
        monkeypatch.delenv(knob, raising=False)
    z = torch.zeros
    short_q, short_v = z(256, 196, 3, 32), z(256, 196, 3, 64)  # short: seq forward, chunk backward
    assert kernel_path(short_q, short_v) == "seq" and kernel_path(short_q, short_v, backward=True) == "chunk"
    assert kernel_path(z(4, 257, 3, 32), z(4, 257, 3, 64)) == "chunk"
    assert kernel_path(z(1, 8, 1, 64), z(1, 8, 1, 64), backward=True) == "chunk"
    assert kernel_path(z(1, 8, 1, 128), z(1, 8, 1, 128)) == "seq"
    from vig.ops.bigla.triton import config
    monkeypatch.setattr(config, "_sm_count", lambda device: 132)  # an H100's / H200's SMs
    long_q, long_v = z(1, 16384, 1, 32), z(1, 16384, 1, 64)  # few long sequences: chunk, the forward's walk split
    assert kernel_path(long_q, long_v) == "chunk" and kernel_path(long_q, long_v, backward=True) == "chunk"
    assert kernel_path(z(4, 16384, 3, 32), z(4, 16384, 3, 64)) == "chunk"  # B*H = 12: the op bench's 2048²
    assert [dot_precision(d) for d in (torch.float32, torch.bfloat16, torch.float16)] == ["ieee", "bf16", "tf32"]
    assert [dot_precision(d, backward=True) for d in (torch.bfloat16, torch.float16)] == ["tf32", "tf32"]
    assert state_dtype(torch.bfloat16) == state_dtype(torch.float16) == torch.bfloat16
    assert state_dtype(torch.float32) == torch.float32
    monkeypatch.setenv("VIG_BIGLA_STATES", "fp32")
    assert state_dtype(torch.bfloat16) == torch.float32
    monkeypatch.delenv("VIG_BIGLA_STATES")
    assert chunk_len(16, 32) == 64 and chunk_len(32, 64) == 64 and chunk_len(64, 64) == 32
    assert (chunk_warps(16, 32), chunk_warps(32, 64), chunk_warps(64, 64), chunk_warps(32, 128)) == (2, 2, 4, 8)
    assert chunk_warps(16, 32, backward=False) == 2 and chunk_warps(32, 64, backward=False) == 4
    assert walk_warps(48, 132, 2) == 4 and walk_warps(48, 132, 8) == 8
    assert walk_warps(1536, 132, 2) == 2 and walk_warps(2112, 132, 2) == 1 and walk_warps(3072, 132, 4) == 4
    # light walks (ViG-T 224's 1,536 do-states walks, ViG-H-T stage 1's 1,536 backward walks): 1 warp from 8 an SM
    assert walk_warps(1056, 132, 2, light=True) == 1 and walk_warps(1055, 132, 2, light=True) == 2
    assert light_walks(32, 64, True, True) and light_walks(16, 32, True, False)
    assert not light_walks(32, 64, True, False) and not light_walks(16, 32, False, False)
    monkeypatch.setenv("VIG_BIGLA_WALK_WARPS", "1")
    assert walk_warps(48, 132, 2) == 1 and walk_warps(3072, 132, 2) == 1
    monkeypatch.setenv("VIG_BIGLA_WALK_WARPS", "16")
    with pytest.raises(ValueError, match="VIG_BIGLA_WALK_WARPS"):
        walk_warps(3072, 132, 2)
    monkeypatch.delenv("VIG_BIGLA_WALK_WARPS")
    assert chunk_len(32, 64, backward=True) == 16 and chunk_len(32, 64, backward=True, prec="bf16") == 16
    assert chunk_len(16, 32, backward=True) == 32 and chunk_len(64, 64, backward=True) == 16  # ViG-H: 32
    monkeypatch.setenv("VIG_BIGLA_CHUNK", "32")
    assert chunk_len(32, 64) == 32 and chunk_len(32, 64, backward=True) == 32
    monkeypatch.setenv("VIG_BIGLA_CHUNK_BWD", "64")
    assert chunk_len(32, 64) == 32 and chunk_len(32, 64, backward=True) == 64


def test_bf16_operand_dots_only_for_bf16_tensors(monkeypatch):
    """The backward's bf16-operand dots are exact only when v, do and the states already hold bf16 values."""
    from vig.ops.bigla.triton import config
    monkeypatch.delenv("VIG_BIGLA_BF16_OPS", raising=False)
    bf, f16, f32 = (torch.zeros(1, dtype=d) for d in (torch.bfloat16, torch.float16, torch.float32))
    on = 2 if config._interpreting() else 1
    assert config.bf16_operands("tf32", bf, bf, bf) == on and config.bf16_operands("tf32x3", bf, bf, bf) == on
    assert config.bf16_operands("tf32", f16, f16, bf) == 0  # fp16 values are not bf16 values
    assert config.bf16_operands("tf32", bf, bf, f32) == 0  # VIG_BIGLA_STATES=fp32
    assert config.bf16_operands("bf16", bf, bf, bf) == 0 and config.bf16_operands("ieee", f32, f32, f32) == 0
    monkeypatch.setenv("VIG_BIGLA_BF16_OPS", "0")
    assert config.bf16_operands("tf32", bf, bf, bf) == 0
    monkeypatch.setenv("VIG_BIGLA_BF16_OPS", "off")
    with pytest.raises(ValueError, match="VIG_BIGLA_BF16_OPS"):
        config.bf16_operands("tf32", bf, bf, bf)


class _LaunchRecorder:
    """Stands in for a triton kernel: `kernel[grid](*args, **options)` records the options into `seen` and raises
    InterruptedError, so a launcher's choices are checked without launching anything."""

    def __init__(self, seen):
        self.seen = seen

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.seen.update(kwargs)
            raise InterruptedError
        return run


def test_walk_stages_knob_reaches_the_walk(monkeypatch):
    """VIG_BIGLA_WALK_STAGES (A/B, untimed): the states walk's num_stages, on the compiled kernels only."""
    from vig.ops.bigla.triton import config, launch
    monkeypatch.delenv("VIG_BIGLA_WALK_STAGES", raising=False)
    monkeypatch.setattr(config, "_INTERPRETING", False)
    assert config.walk_stages() == {}
    for bad in ("0", "5", "two"):
        monkeypatch.setenv("VIG_BIGLA_WALK_STAGES", bad)
        with pytest.raises(ValueError, match="VIG_BIGLA_WALK_STAGES"):
            config.walk_stages()
    monkeypatch.setenv("VIG_BIGLA_WALK_STAGES", "2")
    assert config.walk_stages() == {"num_stages": 2}
    seen = {}
    monkeypatch.setattr(launch, "chunk_states_kernel", _LaunchRecorder(seen))
    monkeypatch.setattr(launch, "_sm_count", lambda device: 132)
    monkeypatch.setattr(config, "_sm_count", lambda device: 132)
    q, k, gf, gb = torch.zeros(4, 2, 196, 3, 32, dtype=torch.bfloat16)
    v = do = torch.zeros(2, 196, 3, 64, dtype=torch.bfloat16)
    with pytest.raises(InterruptedError):
        launch._chunk_states(q, k, v, gf, gb, do, 16, 13, 1.0, "tf32", 2, None, grad_only=True)
    assert seen["num_stages"] == 2 and seen["GRAD_ONLY"], seen
    monkeypatch.setattr(config, "_INTERPRETING", True)  # the interpreter keeps triton's default
    assert config.walk_stages() == {}


def test_programmatic_launch_knob_reaches_the_backward(monkeypatch):
    """VIG_BIGLA_PDL: the do-states walk lets the chunk backward start early (ALLOW_NEXT) and both chunk backward
    launches go out with launch_pdl and PDL. Unset, with config.PDL_BY_DEFAULT: on with saved key states, for both
    gate forms (measured faster), off without them; without it, off; 1 / 0 force it; only on sm_90+, compiled kernels
    and a triton with grid dependency control; a bad value is refused. config.PDL_LAUNCH_ATTRIBUTE False (the GPU
    test's reference) keeps PDL's code and drops the launch attribute."""
    from vig.ops.bigla.triton import config, launch
    monkeypatch.setattr(config, "_INTERPRETING", False)
    monkeypatch.delenv("VIG_BIGLA_PDL", raising=False)
    monkeypatch.setattr(config, "PDL_BY_DEFAULT", False)
    assert not config.programmatic_launch("cuda", saved_keys=True)
    monkeypatch.setattr(config, "PDL_BY_DEFAULT", True)
    monkeypatch.setattr(config, "HAS_GDC", True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.delenv("VIG_BIGLA_PDL", raising=False)
    assert config.programmatic_launch("cuda", saved_keys=True)
    assert not config.programmatic_launch("cuda", saved_keys=False)
    monkeypatch.setenv("VIG_BIGLA_PDL", "yes")
    with pytest.raises(ValueError, match="VIG_BIGLA_PDL"):
        config.programmatic_launch("cuda", saved_keys=True)
    monkeypatch.setenv("VIG_BIGLA_PDL", "0")
    assert not config.programmatic_launch("cuda", saved_keys=True)
    monkeypatch.setenv("VIG_BIGLA_PDL", "1")
    assert config.programmatic_launch("cuda", saved_keys=False)
    walk, bwd = {}, []
    monkeypatch.setattr(launch, "chunk_states_kernel", _LaunchRecorder(walk))

    class _Record:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: bwd.append(kwargs)
    monkeypatch.setattr(launch, "chunk_bwd_kernel", _Record())
    monkeypatch.setattr(launch, "_sm_count", lambda device: 132)
    monkeypatch.setattr(config, "_sm_count", lambda device: 132)
    q, k, gf, gb = torch.zeros(4, 2, 196, 3, 32, dtype=torch.bfloat16)
    v = do = torch.zeros(2, 196, 3, 64, dtype=torch.bfloat16)
    key_states = torch.zeros(2, 13, 6, 32, 64, dtype=torch.bfloat16)
    with pytest.raises(InterruptedError):  # the walk's recorder stops the call
        launch._chunk_bwd(do, q, k, v, gf, gb, 0.5, 16.0, key_states=key_states)
    assert walk["ALLOW_NEXT"] and walk["GRAD_ONLY"], walk
    monkeypatch.setattr(launch, "_chunk_states", lambda *a, **kw: (torch.zeros(2, 13, 6, 32, 64), None))
    monkeypatch.delenv("VIG_BIGLA_PDL")
    launch._chunk_bwd(do, q, k, v, gf, gb, 0.5, None, key_states=key_states)  # log-space gates: on by default
    launch._chunk_bwd(do, q, k, v, gf, gb, 0.5, 16.0, key_states=key_states)  # logits: on by default
    monkeypatch.setattr(config, "PDL_LAUNCH_ATTRIBUTE", False)
    launch._chunk_bwd(do, q, k, v, gf, gb, 0.5, 16.0, key_states=key_states)
    assert [(kw["EXACT_MODE"], kw["PDL"], kw.get("launch_pdl")) for kw in bwd] == [
        (1, True, True), (2, True, True), (1, True, True), (2, True, True), (1, True, None), (2, True, None)]
    monkeypatch.setenv("VIG_BIGLA_PDL", "1")
    for off in ((torch.cuda, "get_device_capability", lambda device=None: (8, 0)), (config, "HAS_GDC", False),
                (config, "_INTERPRETING", True)):
        with monkeypatch.context() as m:
            m.setattr(*off)
            assert not config.programmatic_launch("cuda", saved_keys=True), off


def test_bwd_scores_knob(monkeypatch):
    """VIG_BIGLA_BWD_P: tf32 (unset: the default) 0, carry 1, bf16 2, only with dv's bf16 dots; other values refused
    by name. (The interpreted cases check that it reaches both chunk backward launches.)"""
    from vig.ops.bigla.triton.config import bwd_scores_mode
    monkeypatch.delenv("VIG_BIGLA_BWD_P", raising=False)
    assert bwd_scores_mode(True) == 0
    for name, mode in (("tf32", 0), ("carry", 1), ("bf16", 2)):
        monkeypatch.setenv("VIG_BIGLA_BWD_P", name)
        assert (bwd_scores_mode(True), bwd_scores_mode(False)) == (mode, 0)
    monkeypatch.setenv("VIG_BIGLA_BWD_P", "fp16")
    with pytest.raises(ValueError, match="VIG_BIGLA_BWD_P"):
        bwd_scores_mode(True)


def test_register_cap_knob(monkeypatch):
    from vig.ops.bigla.triton import config
    monkeypatch.setattr(config, "_INTERPRETING", False)
    monkeypatch.delenv("VIG_BIGLA_MAXNREG", raising=False)
    assert config.register_cap("bwd") == {} and config.register_cap("fwd") == {}
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "200")  # a bare number: the chunk backward, as before
    assert config.register_cap("bwd") == {"maxnreg": 200} and config.register_cap("fwd") == {}
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "fwd=168/states=128")
    assert config.register_cap("fwd") == {"maxnreg": 168} and config.register_cap("states") == {"maxnreg": 128}
    assert config.register_cap("bwd") == {}
    # the chunk backward's own default: 255 for full-precision dots (ptxas' 32-register build), none otherwise
    assert config.chunk_bwd_register_cap("ieee") == {"maxnreg": 255} and config.chunk_bwd_register_cap("tf32") == {}
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "200")  # the knob wins
    assert config.chunk_bwd_register_cap("ieee") == {"maxnreg": 200}
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "fwd=168/states=128")
    for bad in ("16", "300", "many", "fwd=16", "walk=128", "fwd=", "fwd=12x", "fwd=0", "fwd=\u00b2"):
        monkeypatch.setenv("VIG_BIGLA_MAXNREG", bad)
        with pytest.raises(ValueError, match="VIG_BIGLA_MAXNREG"):
            config.register_cap("fwd")


def test_chunk_forward_register_cap_rule_reaches_the_launch(monkeypatch):
    """The chunk forward caps registers at CHUNK_FWD_CAP for ViG-T/S/B's 32 x 64 states with bf16 dots (measured
    faster at 1024² / 2048² on an H100), not for ViG-H's 16 x 32 (measured slower) or other dot precisions; the
    VIG_BIGLA_MAXNREG knob wins; the interpreter takes none. The launcher passes it: its kernel is replaced by a
    stub that records the launch options (bf16 inputs at ViG-T's 1024² head shape, 4096 tokens)."""
    from vig.ops.bigla.triton import config, launch
    monkeypatch.setattr(config, "_INTERPRETING", False)
    monkeypatch.delenv("VIG_BIGLA_MAXNREG", raising=False)
    assert config.chunk_fwd_register_cap(32, 64, "bf16") == {"maxnreg": config.CHUNK_FWD_CAP} == {"maxnreg": 168}
    assert config.chunk_fwd_register_cap(16, 32, "bf16") == {}
    assert config.chunk_fwd_register_cap(32, 64, "tf32") == config.chunk_fwd_register_cap(32, 64, "ieee") == {}
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "chunk_fwd=200")
    assert config.chunk_fwd_register_cap(32, 64, "bf16") == {"maxnreg": 200}
    assert config.chunk_fwd_register_cap(16, 32, "bf16") == {"maxnreg": 200}
    monkeypatch.setenv("VIG_BIGLA_MAXNREG", "fwd=168")  # caps another kernel: the rule stands
    assert config.chunk_fwd_register_cap(32, 64, "bf16") == {"maxnreg": 168}
    monkeypatch.delenv("VIG_BIGLA_MAXNREG")
    seen = {}
    monkeypatch.setattr(launch, "chunk_fwd_kernel", _LaunchRecorder(seen))
    monkeypatch.setattr(launch, "_chunk_states", lambda *args, **kwargs: (None, None))
    q, k, gf, gb = torch.zeros(4, 1, 4096, 3, 32, dtype=torch.bfloat16)
    v = torch.zeros(1, 4096, 3, 64, dtype=torch.bfloat16)
    with pytest.raises(InterruptedError):
        launch._chunk_fwd(q, k, v, gf, gb, 1.0, None)
    assert seen["maxnreg"] == 168 and seen["PREC"] == "bf16" and seen["num_warps"] == 4, seen
    seen.clear()
    with pytest.raises(InterruptedError):
        launch._chunk_fwd(q.half(), k.half(), v.half(), gf.half(), gb.half(), 1.0, None)
    assert "maxnreg" not in seen and seen["PREC"] == "tf32", seen
    monkeypatch.setattr(config, "_INTERPRETING", True)
    assert config.chunk_fwd_register_cap(32, 64, "bf16") == {}


def test_triton_backend_rejects_cpu_and_bad_head_dims():
    from vig.ops.bigla import bigla
    q = torch.randn(1, 4, 1, 16)
    v = torch.randn(1, 4, 1, 32)
    with pytest.raises(ValueError, match="CUDA"):
        bigla(q, q, v, q, q, backend="triton")
    from vig.ops.bigla.triton.config import check_supported
    with pytest.raises(ValueError, match="K=24"):
        check_supported(torch.randn(1, 4, 1, 24), v)
    with pytest.raises(ValueError, match="V=48"):
        check_supported(q, torch.randn(1, 4, 1, 48))


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run_cases()))
