"""Launch rules of the fused BiGLA kernels: which path, chunk, precision, warps, register cap and state dtype a
call takes, from its shapes, dtypes, the GPU's SM count and the knobs below (launch.py runs the kernels).

Knobs, read at call time (A/B timings, tests; defaults are the measured choices documented below):
VIG_BIGLA_PATH=chunk|seq, VIG_BIGLA_CHUNK / _CHUNK_BWD=16|32|64, VIG_BIGLA_WARPS / _BWD_WARPS / _WALK_WARPS,
VIG_BIGLA_PREC / _BWD_PREC=tf32|tf32x3|bf16, VIG_BIGLA_FP32_BWD_PREC=ieee|tf32x3, VIG_BIGLA_STATES=bf16|fp32,
VIG_BIGLA_WALK_SEGMENT / _FWD_WALK_SEGMENT=tokens (chunk path; see walk_segment_chunks),
VIG_BIGLA_FWD_SEGMENTS / _BWD_SEGMENTS=local|seq, VIG_BIGLA_FWD_SCRATCH=fp32|half,
VIG_BIGLA_FWD_TILE=0|16|32|64 (block-pair forward rows),
VIG_BIGLA_BF16_OPS=0|1, VIG_BIGLA_DV_BF16=0|1, VIG_BIGLA_SPLIT_EXACT=0|1|fwd|bwd, VIG_BIGLA_MAXNREG (register caps),
VIG_BIGLA_SAVE_KEY_STATES=0|1, VIG_BIGLA_PDL=0|1; seq path only: VIG_BIGLA_BT, VIG_BIGLA_SEGMENT. Read once at import (_common, _fwd,
_chunk_bwd): VIG_BIGLA_FAST_LOG2=0|1, VIG_BIGLA_HALF_SUM_REF=0|1, VIG_BIGLA_BWD_HALF_SUM_REF=0|1.
"""
import os

import torch

from vig.ops.grid import cdiv, sm_count
from vig.ops.bigla.triton._common import _INTERPRETING, HAS_GDC, switch

BT = 16  # tokens per chunk (the measured default); VIG_BIGLA_BT=32/64 for experiments
SHORT_T = 256  # up to this T one program owns a whole (b, h) sequence
# the block-pair forward (fwd_tile_rows) by default: one 64-row block, where it measured faster
FWD_TILE_ROWS, FWD_TILE_MAX_T, FWD_TILE_MAX_KV = 64, 64, 16 * 32
SUPPORTED_DIMS = (16, 32, 64, 128)


def _interpreting() -> bool:
    """Whether the kernels run under triton's interpreter: _common's flag, read when the kernel modules were
    imported, which is when triton chose interpreted or compiled kernels."""
    return _INTERPRETING


def check_supported(q, v):
    K, V = q.shape[-1], v.shape[-1]
    if K not in SUPPORTED_DIMS or V not in SUPPORTED_DIMS:
        raise ValueError(
            f"bigla(backend='triton'): head dims K={K}, V={V} are not supported; "
            f"K and V must each be one of {SUPPORTED_DIMS} (use backend='torch' for others)")
    if q.device.type != "cuda" and not _interpreting():
        raise ValueError(f"bigla(backend='triton') needs CUDA tensors, got tensors on {q.device}")
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"bigla(backend='triton'): q must be fp32, bf16 or fp16, got {q.dtype}")


def _sm_count(device) -> int:
    return sm_count(device)  # a module-level name, so tests can pretend to run on an H200's 132 SMs


def chunk_size() -> int:
    bt = int(os.environ.get("VIG_BIGLA_BT", BT))
    if bt not in (16, 32, 64):
        raise ValueError(f"VIG_BIGLA_BT must be 16, 32 or 64, got {bt}")
    return bt


def segment_length(T: int, BH: int, device, BT: int = BT) -> int:
    """T <= SHORT_T: one segment. Longer: segments of whole chunks, enough of them to give
    about 8 programs per SM, but at least 256 tokens so the state scan stays short."""
    env = os.environ.get("VIG_BIGLA_SEGMENT")
    if env:
        return max(BT, int(env) // BT * BT)
    if T <= SHORT_T:
        return T
    n_chunks = cdiv(T, BT)
    want = max(1, (8 * _sm_count(device)) // BH)
    return max(256, BT * cdiv(n_chunks, want))


def seq_precision(dtype, backward: bool) -> str:
    """Default dots of the seq backward and of the segment scan ahead of a chunk states walk, before any knob
    (see _seq_bwd_cfg); the seq forward and its segment states take dot_precision, as the chunk forward does."""
    return "ieee" if dtype == torch.float32 else ("tf32x3" if backward else "tf32")


def _seq_bwd_cfg(q, v):
    """The seq backward's settings (the seq forward takes dot_precision and seq_warps). fp32 inputs:
    full-precision dots. bf16/fp16: 3xtf32, because the gate gradients are long prefix sums of q dq - k dk,
    a difference that cancels and would amplify tf32's 5e-4 past the 5e-3 tolerance at T = 3136."""
    K, V = q.shape[-1], v.shape[-1]
    prec = seq_precision(q.dtype, True)
    if q.dtype != torch.float32:  # experiment knob; tf32 misses dg's 5e-3 at T=3136
        prec = os.environ.get("VIG_BIGLA_BWD_PREC", prec)
        if prec not in ("tf32", "tf32x3"):
            raise ValueError(f"VIG_BIGLA_BWD_PREC must be tf32 or tf32x3, got {prec!r}")
    return K, V, prec, seq_warps(K, V)


MAX_SHARED_STAGES_KV = 128 * 128  # seq_bwd_stages: from this state size up, half inputs' backward drops a stage


def seq_bwd_stages(K: int, V: int, prec: str) -> int:
    """Software-pipelining stages of the seq backward. Its loads are staged in shared memory, and at K = V = 128
    with 3xtf32 dots (bf16 / fp16 inputs) three stages take 229,376 B under triton 3.6 and 237,568 B under 3.8,
    past the 232,448 B one program may have on an H100 / H200: the launch fails there. Two stages take 204,800 /
    212,992 B (sm_90a compiles, tests/ops/test_triton_aot.py); fp32 inputs (full-precision dots, 180,224 B) and
    smaller states keep triton's default three. Not timed: no ViG model has K * V above 64 * 64."""
    return 2 if K * V >= MAX_SHARED_STAGES_KV and prec != "ieee" else 3


def seq_warps(K: int, V: int) -> int:
    """Warps of the seq path's (and the segment scan's) programs; VIG_BIGLA_WARPS overrides."""
    if _interpreting():
        return 1
    return int(os.environ.get("VIG_BIGLA_WARPS", 4 if K * V <= 64 * 64 else 8))


# Launch choices of the seq forward with bf16 dots, per kernel and (K, V): (warps, register cap) -> (programs per
# SM, a wave's time over a wave of the first choice). Programs per SM: the GPU's builds (H200, triton 3.6, the bench
# JSON's kernel_resources) against 64K registers per SM. Wave costs: one run (NOTES session 15, gate logits, GPU ms).
# Walk, 32, 64: 149 registers on 4 warps, 229 on 2, 168 capped on 2 (10 B spills); ViG-T 224 (768 programs)
#   0.121 / 0.137 / 0.100 ms in 2 / 2 / 1 waves, ViG-S 224 (1536) 0.239 / 0.209 / 0.196 in 4 / 3 / 2.
# Walk, 16, 32: 112 on 4 warps, 128 on 2; ViG-H-T stage 3 (1536) 0.138 / 0.111 in 3 / 2 waves.
# One 64-row block (fwd_tile_rows' default), 16, 32: 221 on 4 warps, 255 on 2 (4 B spills); ViG-H-T stage 4
#   (3072 programs) 0.067 / 0.050 in 12 / 6 waves.
SEQ_FWD_LAUNCHES = {
    "walk": {(32, 64): {(4, None): (3, 1.0), (2, None): (4, 1.15), (2, 168): (6, 1.65)},
             (16, 32): {(4, None): (4, 1.0), (2, None): (8, 1.21)}},
    "block64": {(16, 32): {(4, None): (2, 1.0), (2, None): (4, 1.49)}},
}


def seq_fwd_launch(kernel, K: int, V: int, programs: int, sm_count: int, prec: str) -> dict:
    """num_warps (and maxnreg) of the seq forward, kernel "walk" (_fwd), "block<rows>" (_fwd_tiles) or None (a
    variant with no measured choices): of the measured choices (SEQ_FWD_LAUNCHES), the one whose waves (programs
    over programs per SM x SMs) times its wave cost is least, first on ties: more resident programs hide the
    latency of each program's serial chain, at a cost per wave. Elsewhere (not measured: other kernels, dtypes,
    head sizes and blocks) seq_warps. VIG_BIGLA_WARPS and a fwd cap in VIG_BIGLA_MAXNREG override."""
    cap = register_cap("fwd")
    options = SEQ_FWD_LAUNCHES.get(kernel, {}).get((K, V))
    if _interpreting() or "VIG_BIGLA_WARPS" in os.environ or cap or prec != "bf16" or options is None:
        return {"num_warps": seq_warps(K, V), **cap}

    def cost(choice):
        per_sm, wave_cost = options[choice]
        return cdiv(programs, per_sm * sm_count) * wave_cost

    warps, maxnreg = min(options, key=cost)
    return {"num_warps": warps, **({"maxnreg": maxnreg} if maxnreg else {})}


def kernel_path(q, v, backward: bool = False) -> str:
    """"chunk": a states walk, then one program per (sequence, chunk) (_chunk_*.py); "seq": one program per sequence
    segment walking its chunks (_fwd.py, _bwd.py, segment-parallel when long). The backward takes chunk while its
    [K, V] states fit in registers; so does the forward, except for short sequences, T <= SHORT_T, which run as one
    program each with no states pass (ViG-T/S/B 224 on an H100: 0.31/0.54/0.54 ms against chunk's 0.42/0.60/0.59
    then; in session 5's GPU-only timing equal, 0.163/0.319/0.322 against 0.161/0.319/0.319; session 11, H200, bf16
    dots: 0.152 against 0.182 at ViG-T). Long sequences over few (batch, head) pairs took seq until session 12,
    while the chunk forward's unsplit walk was their critical path; with its walk in local segments the chunk
    forward is faster there too (H200, bf16, gate logits, GPU time: B*H = 12, T = 16384 0.228 against 0.303 ms).
    VIG_BIGLA_PATH forces one (A/B timings, tests)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    path = os.environ.get("VIG_BIGLA_PATH")
    if path is None:
        seq_fwd = not backward and T <= SHORT_T
        path = "seq" if K * V > 64 * 64 or seq_fwd else "chunk"
    if path not in ("chunk", "seq"):
        raise ValueError(f"VIG_BIGLA_PATH must be 'chunk' or 'seq', got {path!r}")
    return path


def dot_precision(dtype, backward: bool = False) -> str:
    """fp32 inputs: full-precision dots. bf16 inputs: bf16 tensor-core operands in the forward (both paths,
    the chunk forward's states walk and the seq forward's segment states; a split chunk walk's segment scan
    keeps seq_precision), tf32 in the backward; fp16 inputs: tf32 (bf16 would drop 3 of
    fp16's mantissa bits). VIG_BIGLA_PREC / VIG_BIGLA_BWD_PREC = tf32, tf32x3 or bf16 override for half inputs.
    Forward with bf16 dots, H200, bf16, GPU time (benchmarks/NOTES_bigla.md, session 8): ViG-T/S/B 224
    0.139/0.274/0.274 ms against 0.161/0.319/0.318 with tf32, ViG-H-T stage 1 0.386 against 0.475, T=4096
    0.270 against 0.311; o's relative RMSE against float64 2.6-2.9e-3 against 1.7-1.9e-3 (tolerance 5e-3).
    The backward keeps tf32: with bf16 dots its gate gradients measured 5.5e-3 to 6.4e-3 on the full
    test list (32-token backward chunks), over the tolerance."""
    if dtype == torch.float32:
        return _fp32_bwd_precision() if backward else "ieee"
    knob = "VIG_BIGLA_BWD_PREC" if backward else "VIG_BIGLA_PREC"
    default = "bf16" if dtype == torch.bfloat16 and not backward else "tf32"
    prec = os.environ.get(knob) or default
    if prec not in ("tf32", "tf32x3", "bf16"):
        raise ValueError(f"{knob} must be tf32, tf32x3 or bf16, got {prec!r}")
    return prec


def _fp32_bwd_precision() -> str:
    """The chunk backward's dots for fp32 inputs: tf32x3 (3xtf32 tensor-core dots, the default) or ieee (FMA dots,
    VIG_BIGLA_FP32_BWD_PREC=ieee). H200, session 23: tf32x3 passed every fp32 case of tests/ops/test_triton_gpu.py at
    fp32's 1e-5 and ran the fp32 fwd+bwd in 1.14 against 3.30 ms (ViG-T 224) and 4.71 against 9.65 ms (ViG-H-T stage
    1). Compiled for sm_90a, ieee's FMA dots take 255 registers and a 2.0-3.7 KB stack under chunk_bwd_register_cap's
    255 cap; tf32x3 takes 255 registers and 0.7-1.3 KB of spills (benchmarks/NOTES_bigla.md, session 21)."""
    prec = os.environ.get("VIG_BIGLA_FP32_BWD_PREC") or "tf32x3"
    if prec not in ("ieee", "tf32x3"):
        raise ValueError(f"VIG_BIGLA_FP32_BWD_PREC must be ieee or tf32x3, got {prec!r}")
    return prec


def state_dtype(dtype):
    """Storage of the chunk states between the walk and the per-chunk kernels (they are used in fp32):
    fp32 for fp32 inputs; bf16 for half inputs, which halves the backward's extra memory and its state
    traffic (H100, ViG-T 224: 174 against 330 MB, backward kernels 689 against 800 us) and passed every
    bf16/fp16 case of tests/ops/test_triton_gpu.py. VIG_BIGLA_STATES=fp32 keeps fp32 states (A/B runs)."""
    knob = os.environ.get("VIG_BIGLA_STATES") or "bf16"
    if knob not in ("fp32", "bf16"):
        raise ValueError(f"VIG_BIGLA_STATES must be fp32 or bf16, got {knob!r}")
    return torch.bfloat16 if knob == "bf16" and dtype != torch.float32 else torch.float32


def fwd_scratch_dtype(dtype):
    """Storage of the seq forward's scratch (the backward direction's inter-chunk term, written by its first pass
    and read by its second): bf16 for bf16 inputs (half the scratch traffic, one more rounding of that term;
    H200, bf16, GPU time, one run, NOTES session 13: forward ViG-T 224 0.139 -> 0.132 ms, ViG-S 224 0.274 ->
    0.260), else fp32. Not fp16: the term is stored before the output's scale (K^-0.5 / 2), so fp16's range
    would run out there first. VIG_BIGLA_FWD_SCRATCH=fp32 keeps it fp32 (A/B runs; =half is the default)."""
    knob = os.environ.get("VIG_BIGLA_FWD_SCRATCH") or "half"
    if knob not in ("fp32", "half"):
        raise ValueError(f"VIG_BIGLA_FWD_SCRATCH must be fp32 or half, got {knob!r}")
    return torch.bfloat16 if knob == "half" and dtype == torch.bfloat16 else torch.float32


CAPPED_KERNELS = ("bwd", "fwd", "states", "chunk_fwd")


def register_cap(kernel: str) -> dict:
    """The launch option capping `kernel`'s registers per thread (ptxas spills the rest, more programs fit on an
    SM), from VIG_BIGLA_MAXNREG: "n" caps the chunk backward (the knob's first meaning); "fwd=n,states=n" (or
    "/" between, for the benchmarks' comma-separated variants) caps any of CAPPED_KERNELS: the chunk backward,
    the seq forward, the chunk states walk, the chunk forward. The seq forward's measured default (2 warps
    capped at 168 where that costs fewest waves) is in SEQ_FWD_LAUNCHES, the chunk forward's (168 at ViG-T/S/B's
    states, H100, session 34) in chunk_fwd_register_cap; a cap asked for here replaces either. No other defaults:
    on an H200 no other cap helped by more than 3% at any bench shape (NOTES sessions 7, 8, 14)."""
    text = os.environ.get("VIG_BIGLA_MAXNREG")
    if not text:
        return {}
    caps = {}
    for part in (f"bwd={text}" if text.isdigit() else text).replace("/", ",").split(","):
        name, _, n = part.partition("=")
        n = n.strip()
        if name.strip() not in CAPPED_KERNELS or not (n.isascii() and n.isdigit()) or not 24 <= int(n) <= 255:
            raise ValueError(f"VIG_BIGLA_MAXNREG must be an integer in [24, 255] or a list like "
                             f"'fwd=168,states=128' over {CAPPED_KERNELS} with caps in [24, 255], got {text!r}")
        caps[name.strip()] = int(n)
    if _interpreting():  # checked above all the same
        return {}
    return {"maxnreg": caps[kernel]} if kernel in caps else {}


def chunk_bwd_register_cap(prec: str) -> dict:
    """The chunk backward's register option: register_cap("bwd") when VIG_BIGLA_MAXNREG asks, else a 255 cap
    for full-precision (fp32 inputs') dots. Those FMA dots alone, under the launch's `.reqntid`, send ptxas to 32
    registers with 16-21 KB of spills per thread; a .maxnreg of 255 gives 255 registers and a 2.0-3.7 KB stack
    (sm_90a, triton 3.6 and 3.8, K, V = 16, 32 and 32, 64; benchmarks/NOTES_bigla.md, session 21). Same code, same
    numbers; untimed. bf16 / fp16 inputs' tensor-core dots reach 255 registers without it."""
    cap = register_cap("bwd")
    if cap or prec != "ieee" or _interpreting():
        return cap
    return {"maxnreg": 255}


CHUNK_FWD_CAP = 168  # chunk_fwd_register_cap's default for ViG-T/S/B-sized states with bf16 dots


def chunk_fwd_register_cap(K: int, V: int, prec: str) -> dict:
    """The chunk forward's register option: register_cap("chunk_fwd") when VIG_BIGLA_MAXNREG asks, else a cap of
    CHUNK_FWD_CAP for K, V = 32, 64 (ViG-T/S/B's heads; 4 warps, 64-token chunks) with bf16 dots. H100, bf16, gate
    logits, GPU ms, two runs of one process each (benchmarks/NOTES_bigla.md, session 34): ViG-T 1024² forward
    0.159 / 0.159 against 0.174 / 0.173 uncapped, 2048² 0.163 against 0.178; 144 gave 0.165 / 0.169, 192 and 128 no
    change; ViG-T at 1024² infers at 2,031 against 2,005 img/s (bs 16, one call). Not at ViG-H's 16 x 32 states
    (stage 1 forward 0.434 against 0.416 with 168), nor untimed dot precisions (fp16's and fp32's)."""
    cap = register_cap("chunk_fwd")
    if cap or _interpreting() or (K, V) != (32, 64) or prec != "bf16":
        return cap
    return {"maxnreg": CHUNK_FWD_CAP}


def bf16_operands(prec: str, *tiles) -> int:
    """Whether the chunk backward's dots that have v, do or a state as one operand take bf16 operands
    (_common.mm_bf16_rhs): only where those tensors are all bf16 already, so the products stay exact, and
    only in place of tf32 or 3xtf32 dots (the bf16 knob rounds every operand anyway). VIG_BIGLA_BF16_OPS=0
    turns it off (A/B runs)."""
    if not switch("VIG_BIGLA_BF16_OPS", "1") or prec not in ("tf32", "tf32x3"):
        return 0
    if not all(t.dtype == torch.bfloat16 for t in tiles):
        return 0
    return 2 if _interpreting() else 1  # 2: the same split, dots in fp32 (see _common._dot_bf16)


BWD_SCORES_MODES = {"tf32": 0, "carry": 1, "bf16": 2}


def bwd_scores_mode(round_dv: bool) -> int:
    """The chunk backward's in-chunk scores P (they feed dv alone): VIG_BIGLA_BWD_P=tf32 (0, the default) keeps
    them fp32 from PREC's dot; carry (1) holds the forward direction's P as bf16 while the backward direction runs
    (the rounding dv's dot gives it anyway, so only the diagonal, which both directions hold, rounds once more);
    bf16 (2) also forms P from bf16 operands. Only with dv's bf16 dots (round_dv, dv_bf16), else 0. An A/B knob:
    untimed (benchmarks/NOTES_bigla.md, session 55)."""
    name = os.environ.get("VIG_BIGLA_BWD_P") or "tf32"
    if name not in BWD_SCORES_MODES:
        raise ValueError(f"VIG_BIGLA_BWD_P must be one of {', '.join(BWD_SCORES_MODES)}, got {name!r}")
    return BWD_SCORES_MODES[name] if round_dv else 0


def dv_bf16() -> bool:
    """With bf16-operand dots in the chunk backward (bf16 inputs), dv's dots also round their fp32 operand to
    bf16: one dot instead of a hi + lo pair (_chunk_bwd._direction). H200, bf16, GPU time, one run (NOTES,
    session 9): fwd+bwd ViG-T 224 0.622 against 0.633 ms, ViG-S/B 1.211 against 1.231, ViG-H-T stage 1 1.840
    against 1.946, T=4096 1.030 against 1.041. VIG_BIGLA_DV_BF16=0 keeps the split (A/B runs)."""
    return switch("VIG_BIGLA_DV_BF16", "1")


def split_exact(kernel: str) -> bool:
    """Whether `kernel` ("fwd": the seq forward, "bwd": the chunk backward) runs as two launches, the first
    without the strong-gate exact intra-chunk path compiled in. VIG_BIGLA_SPLIT_EXACT=0 (neither), 1 (both),
    fwd, bwd or fwd,bwd; default bwd. H200, bf16, GPU time, one run (NOTES, session 10): fwd+bwd ViG-T 224 0.560
    against 0.618 ms, ViG-S/B 1.087 / 1.089 against 1.213 / 1.206, T=4096 0.957 against 1.028, T=16384 1.034
    against 1.106, ViG-H-T stage 1 1.833 against 1.845 (device ptxas: 22-36 against 46-90 spilled registers).
    The split seq forward timed alike (0.141 against 0.140 ms at ViG-T 224), so it stays one launch.
    Backward: chunks on the fast path, listing the others, then a few programs walking that list on the exact path
    (_chunk_bwd EXACT_MODE 1, 2). Forward: every segment on the fast path, flagging those with an exact-path chunk,
    then the flagged ones again with both paths (_fwd EXACT_MODE 1, 2)."""
    knob = os.environ.get("VIG_BIGLA_SPLIT_EXACT") or "bwd"
    parts = {"0": set(), "1": {"fwd", "bwd"}}.get(knob, set(knob.split(",")))
    if not parts <= {"fwd", "bwd"}:
        raise ValueError(f"VIG_BIGLA_SPLIT_EXACT must be 0, 1, fwd, bwd or fwd,bwd, got {knob!r}")
    return kernel in parts


def fwd_tile_rows(T: int, K: int, V: int) -> int:
    """Rows of the block-pair forward's blocks (_fwd_tiles.py), or 0 for the walking seq forward. Asked for
    (VIG_BIGLA_FWD_TILE=0|16|32|64) it is taken where the seq forward would run and T <= SHORT_T (its cost grows
    with T^2). By default only where one block covers the sequence at ViG-H's K, V = 16, 32: H200, bf16, gate
    logits, GPU time (NOTES session 14): ViG-H-T stage 4 (128, 49, 24, 16, 32) 0.075 against the walk's 0.099 ms,
    but stage 3 (T = 196) 0.256 against 0.152 and ViG-T 224 0.215 against 0.136 (221 registers: 2 programs per
    SM, each a chain of loads, scans and dots per key block). One launch with both intra-block paths compiled in
    (VIG_BIGLA_SPLIT_EXACT does not apply)."""
    knob = os.environ.get("VIG_BIGLA_FWD_TILE") or ""
    if knob not in ("", "0", "16", "32", "64"):
        raise ValueError(f"VIG_BIGLA_FWD_TILE must be 0, 16, 32 or 64, got {knob!r}")
    if knob:
        rows = int(knob)
    else:
        rows = FWD_TILE_ROWS if T <= FWD_TILE_MAX_T and K * V <= FWD_TILE_MAX_KV else 0
    return rows if T <= SHORT_T else 0


def chunk_len(K: int, V: int, backward: bool = False, prec: str = "tf32") -> int:
    """Measured on an H100 at ViG-T 224 (benchmarks/NOTES_bigla.md): the forward is fastest with
    64-token chunks; the backward, whose program keeps far more tiles alive, with 16 at K, V = 32, 64 (tf32
    dots; with bf16 dots 16 and 32 ran alike; session 6: 32 took 1.130 against 0.662 ms fwd+bwd). Half-size
    tiles (K * V <= 16 * 32, every ViG-H stage) take 32: session 6, bf16 GPU time at bs 128, ViG-H-T stages
    1-4: 2.096 / 1.105 / 0.661 / 0.394 ms against 2.225 / 1.150 / 0.657 / 0.408 with 16, and 40% less
    state memory. VIG_BIGLA_CHUNK(_BWD) override."""
    if backward:
        c = int(os.environ.get("VIG_BIGLA_CHUNK_BWD") or os.environ.get("VIG_BIGLA_CHUNK")
                or (32 if K * V <= 16 * 32 else 16))
    else:
        c = int(os.environ.get("VIG_BIGLA_CHUNK") or (64 if K * V <= 32 * 64 else 32))
    if c not in (16, 32, 64):
        raise ValueError(f"VIG_BIGLA_CHUNK / VIG_BIGLA_CHUNK_BWD must be 16, 32 or 64, got {c}")
    if backward and c == 64 and prec == "bf16":
        # this compiled backward faulted with an illegal memory access on an H100 (triton 3.6)
        raise ValueError("bigla: a 64-token backward chunk with bf16 dots is not supported; "
                         "use VIG_BIGLA_CHUNK_BWD=16/32 or VIG_BIGLA_BWD_PREC=tf32")
    return c


def _chunk_cfg(q, v, backward):
    K, V = q.shape[-1], v.shape[-1]
    prec = dot_precision(q.dtype, backward)
    C = chunk_len(K, V, backward, prec)
    warps = int(os.environ.get("VIG_BIGLA_WARPS", chunk_warps(K, V, backward)))
    return K, V, C, prec, 1 if _interpreting() else warps


def chunk_warps(K: int, V: int, backward: bool = True) -> int:
    """Warps per program of the chunk kernels. Two for the backward at K*V <= 32*64: on an H100 (bf16,
    GPU kernel time, benchmarks/results/profile_bigla_h100_warps.json) fwd+bwd took 803 against 852 us
    with four at ViG-T 224, 1481 against 1688 at ViG-B 224, 2297 against 3659 at ViG-H-T stage 1 (where
    the 64-token forward took 312 against 425 us); eight was slower everywhere. The 64-token forward
    keeps four above K*V = 16*32: with two, ptxas (sm_90a) spills 1 KB per thread at K, V = 32, 64.
    Larger states keep four (eight past 64) so their tiles fit in registers."""
    if K * V <= (32 * 64 if backward else 16 * 32):
        return 2
    return 4 if max(K, V) <= 64 else 8


def _warps_knob(name: str, warps: int) -> int:
    """`warps`, or the count asked for by the knob `name` (1, 2, 4 or 8; the interpreter keeps `warps`)."""
    knob = os.environ.get(name)
    if knob is None or _interpreting():
        return warps
    if knob not in ("1", "2", "4", "8"):
        raise ValueError(f"{name} must be 1, 2, 4 or 8, got {knob!r}")
    return int(knob)


def chunk_bwd_warps(warps: int) -> int:
    """Warps of the chunk backward's gradient launches (not the states walk): VIG_BIGLA_BWD_WARPS=1|2|4|8
    overrides the chunk kernels' count (A/B runs). With the split backward, ptxas (local sm_90a, triton 3.6,
    K, V = 32, 64, bf16, gate logits) gives the fast-path launch 0 B of spill stores at 4 warps against 304 at
    2 (255 registers either way), yet 4 warps measured 17-25% slower (H200, bf16, GPU time, NOTES session 11:
    ViG-T 224 fwd+bwd 0.720 against 0.614 ms with gate logits, ViG-H-T stage 1 2.703 against 2.169).
    1 warp (not timed; session 16, same compile): 1,488 B of spill stores, but 39 barriers per thread against
    155 and 6,357 warp instructions per chunk against 2 x 3,602, with 8 programs per SM against 4."""
    return _warps_knob("VIG_BIGLA_BWD_WARPS", warps)


WALK_SEGMENT_TOKENS = 1024


LOCAL_WALK_FILL = 4  # local segments: split until the walks fill the SMs this many times over...
LOCAL_WALK_MIN_CHUNKS = 16  # ...keeping at least this many chunks per segment


def walk_segment_chunks(T: int, C: int, n_walks: int, sm_count: int, forward: bool = False) -> int:
    """Chunks per states-walk segment. Segments from the seq path's scan (local_segments false, opt-in: =seq)
    walk in parallel after that scan over segments (with the seq path's default dots, seq_precision),
    a whole extra pass, so a walk is split into 1024-token segments only when the walks (sequences x states)
    fill fewer than half the SMs and T > 2048, where each walk's length is the critical path. H200, bf16, GPU time,
    one run (NOTES, session 10): the backward at (4, 16384, 3, 32, 64), 48 walks, fwd+bwd 1.041 ms split
    against 1.622 unsplit; the forward at (16, 4096, 3, 32, 64), 96 walks, 0.223 ms unsplit against 0.271
    split; its backward, 192 walks, was slower split on an H100 (1.31 against 1.20 ms).
    Local segments (local_segments, the default, no extra pass): split while the walks fill fewer than
    LOCAL_WALK_FILL x the SMs, into segments of at least LOCAL_WALK_MIN_CHUNKS chunks. H200, bf16, gate logits, GPU
    time, one run (NOTES, session 12), forward at (16, 4096, 3, 32, 64), 96 walks: unsplit 0.263 ms, 4 / 8 / 16
    chunks per segment 0.235 / 0.218 / 0.206. The backward's local walks (four per sequence) take 1024-token
    segments while they fill fewer than LOCAL_WALK_FILL x the SMs. H200, bf16, GPU time, one run (NOTES, session
    13), fwd+bwd plain / logit gates: (16, 4096, 3, 32, 64), 192 walks, seq route 0.878 / 0.934 ms, local 3
    segments 0.855 / 0.910, 4 (1024 tokens) 0.835 / 0.883, 16 (256 tokens) 0.911 / 0.955; (4, 16384, 3, 32, 64),
    48 walks, seq route (1024-token segments) 0.945 / 0.999, local 11 segments 0.847 / 0.922, 16 segments
    0.855 / 0.897.
    VIG_BIGLA_WALK_SEGMENT = tokens (a multiple of C, rounded down, at least C) forces a length;
    VIG_BIGLA_FWD_WALK_SEGMENT the forward's alone."""
    name = "VIG_BIGLA_FWD_WALK_SEGMENT" if forward and os.environ.get("VIG_BIGLA_FWD_WALK_SEGMENT") else \
        "VIG_BIGLA_WALK_SEGMENT"
    env = os.environ.get(name)
    n_chunks = cdiv(T, C)
    if env:
        if not env.isdigit() or int(env) < C:
            raise ValueError(f"{name} must be a token count >= the chunk length {C}, got {env!r}")
        return min(n_chunks, int(env) // C)
    local = local_segments(forward)
    if local and forward:
        want = cdiv(LOCAL_WALK_FILL * sm_count, n_walks)
        return n_chunks if want <= 1 else min(n_chunks, max(LOCAL_WALK_MIN_CHUNKS, cdiv(n_chunks, want)))
    tokens_1024 = min(n_chunks, max(1, WALK_SEGMENT_TOKENS // C))
    if local:  # the backward's four walks per sequence
        few = n_walks < LOCAL_WALK_FILL * sm_count and T > WALK_SEGMENT_TOKENS
    else:
        few = 2 * n_walks < sm_count and T > 2 * WALK_SEGMENT_TOKENS
    return tokens_1024 if few else n_chunks


def light_walks(K: int, V: int, grad: bool, grad_only: bool) -> bool:
    """walk_warps' `light` walks: the saved-key route's do-states walk (whole sequences of at most 256 tokens), or a
    backward walk of states no larger than ViG-H's 16 x 32, the two kinds timed faster on 1 warp at 8-16 an SM."""
    return grad_only or (grad and K * V <= 16 * 32)


def walk_warps(n_walks: int, sm_count: int, warps: int, light: bool = False) -> int:
    """Fewer walks than SMs: each walk's step latency is the critical path, so at least 4 warps
    (fwd+bwd at (4, 16384, 3, 32, 64), 48 walks, took 3.07 ms with 2 warps against 2.28 ms with 4
    everywhere; H100, one run). Many walks on 2 warps: 1 warp, a throughput choice (168 registers, no spills, 12
    programs per SM against 8; shared memory holds it at 11, see walk_stages), from 16 walks per SM, or from 8
    for `light` walks (the saved-key route's do-states walk over whole sequences of at most 256 tokens, or states
    of at most 16 x 32, ViG-H's: light_walks), where the number of walks, not their step latency, sets the time.
    bf16, fwd+bwd GPU ms, each against 2 warps in one process:
    - session 17 (H200, gate logits, from 16 walks an SM): ViG-T 224 0.521 -> 0.486, ViG-S 224 1.015 -> 0.961,
      ViG-H-T stage 3 0.526 -> 0.498;
    - session 31 (light, from 8 an SM): ViG-T 224's 1,536 do-states walks 0.394 -> 0.378 on an H200 (its walk
      kernel 60.6 -> 47.7 us with 2 stages), 0.403 -> 0.401 on an H100;
    - session 32 (H100, light, from 8 an SM): ViG-H-T stage 1's 1,536 backward walks 1.541 -> 1.451 (session 17's
      H200, older walks: 1.905 -> 1.927). Fewer than 8 an SM stay on 2: ViG-T 1024's 768 local-segment walks
      took 0.742 -> 0.945 with 1 warp (forward 0.157 -> 0.244). Forward walks at 8-16 an SM (ViG-H-T stage 2's
      1,536: 0.214 -> 0.216 ms fwd with every walk on 1 warp, one run) keep 2;
    - session 33 (H100): so do ViG-T-sized states' long walks at 8-16 an SM, slower on 1 warp: ViG-S 1024² (bs 16)
      1.492 -> 1.591, ViG-T 1024² at bs 32 1.478 -> 1.571 (1,536 backward walks each).
    VIG_BIGLA_WARPS and the interpreter keep their setting; VIG_BIGLA_WALK_WARPS=1|2|4|8 sets every walk's (A/B
    runs)."""
    if "VIG_BIGLA_WARPS" not in os.environ and not _interpreting():
        if n_walks < sm_count:
            warps = max(warps, 4)
        elif warps == 2 and n_walks >= (8 if light else 16) * sm_count:
            warps = 1
    return _warps_knob("VIG_BIGLA_WALK_WARPS", warps)


def walk_stages() -> dict:
    """The states walk's pipeline stages (triton's num_stages: its loads of the next chunks go through shared-memory
    buffers, one fewer than the stages), from VIG_BIGLA_WALK_STAGES=1|2|3|4; unset: triton's default (3). An A/B
    knob, untimed: ptxas (triton 3.8, sm_90a; ViG-T's do-states walk on 1 warp) gives 19,456 / 13,312 / 7,168 B of
    shared memory at 3 / 2 / 1 stages and 166-168 registers, so the 1 KB an H100 block reserves beside 19,456 B fits
    11 programs an SM, not the 12 the registers allow (benchmarks/NOTES_bigla.md, session 29)."""
    knob = os.environ.get("VIG_BIGLA_WALK_STAGES")
    if knob is None or _interpreting():
        return {}
    if knob not in ("1", "2", "3", "4"):
        raise ValueError(f"VIG_BIGLA_WALK_STAGES must be 1, 2, 3 or 4, got {knob!r}")
    return {"num_stages": int(knob)}


def local_segments(forward: bool) -> bool:
    """How a segmented states walk gets the state entering each segment. Local: every segment walks from zero,
    a short scan over the segments' leaving states (_states.seg_scan_kernel) gives the entering ones, and each
    chunk's decayed share of its segment's is added by the chunk forward (_chunk_fwd SEGMENTS) or, in the
    backward, by one elementwise pass over the stored states (states_fixup_kernel): no extra pass over the
    inputs. Seq: the seq path's segment scan first, one more pass over q, k, v, do and the gates, then each
    segment walks from its entering state. VIG_BIGLA_FWD_SEGMENTS, VIG_BIGLA_BWD_SEGMENTS = local|seq (default
    local for both, measured faster: see walk_segment_chunks)."""
    name = "VIG_BIGLA_FWD_SEGMENTS" if forward else "VIG_BIGLA_BWD_SEGMENTS"
    knob = os.environ.get(name) or "local"
    if knob not in ("local", "seq"):
        raise ValueError(f"{name} must be local or seq, got {knob!r}")
    return knob == "local"


def exact_list_programs(n_chunks: int, sm_count: int) -> int:
    """Programs of the split backward's exact-path launch, which walk the list of chunks its first launch left
    (usually none): one wave of 4 per SM (the exact path's registers allow 4 at 2 warps), 2 under the interpreter
    so that its cases walk the list with a stride."""
    return max(1, min(n_chunks, 2 if _interpreting() else 4 * sm_count))


def save_key_states(q, v) -> bool:
    """Whether a training forward saves its key states S^f, S^b for the backward (the default since session 29;
    VIG_BIGLA_SAVE_KEY_STATES=0 turns it off): the backward's states walk then walks only the two do states, half its
    programs (ViG-T 224: 1,536 walks in one wave against 3,072 in two), for [2, NT, B*H, K, V] more saved
    activations (82 MB a call at ViG-T 224, bs 256). H100, bf16, one process: fwd+bwd 0.406 against 0.430 ms at
    ViG-T 224, 0.794 against 0.859 at ViG-S; ViG-T training 12,527 against 12,231 img/s at 6,382 against 5,446 MiB
    (benchmarks/NOTES_bigla.md, session 29). Only where the seq forward walks whole sequences in the backward's
    chunks (the chunk backward, no block-pair forward, one segment, the forward's BT equal to the backward's chunk)
    and at states no larger than the measured K, V = 32, 64 (ViG-T/S/B at T <= 256): larger ones would add stores
    to a seq forward already at its register cap, untimed."""
    if not switch("VIG_BIGLA_SAVE_KEY_STATES", "1"):
        return False
    B, T, H, K = q.shape
    V = v.shape[-1]
    if K * V > 32 * 64:
        return False
    if kernel_path(q, v) != "seq" or kernel_path(q, v, backward=True) != "chunk" or fwd_tile_rows(T, K, V):
        return False
    BT = chunk_size()
    return _chunk_cfg(q, v, True)[2] == BT and segment_length(T, B * H, q.device, BT) >= T


def key_states_spec(B: int, T: int, H: int, K: int, V: int, dtype) -> tuple[tuple, torch.dtype]:
    """Shape and dtype of the key states a forward saves (save_key_states): S^f, S^b entering each of the seq
    forward's chunks, in the backward states walk's layout."""
    return (2, cdiv(T, chunk_size()), B * H, K, V), state_dtype(dtype)


# programmatic_launch's rule when VIG_BIGLA_PDL is unset: on for the saved-key route (H100, session 53: the GPU tests
# of both gate forms passed, bit for bit against the same kernels launched plainly, and both forms ran faster).
PDL_BY_DEFAULT = True
# False: the PDL kernels go out without the launch attribute, so their waits return at once and nothing overlaps;
# the same compiled arithmetic, which the GPU test compares against bit for bit (the kernels without PDL are
# compiled differently: with log-space gates their last bits differed, within the oracle's tolerance)
PDL_LAUNCH_ATTRIBUTE = True


def pdl_launch_args(pdl: bool) -> dict:
    """The launch keyword of a kernel compiled with PDL (see PDL_LAUNCH_ATTRIBUTE)."""
    return {"launch_pdl": True} if pdl and PDL_LAUNCH_ATTRIBUTE else {}


def programmatic_launch(device, saved_keys: bool) -> bool:
    """Whether the chunk backward's launches after its states walk use programmatic dependent launch (Hopper and
    later, a triton with grid dependency control): each may start its programs while the kernel before it still
    runs, doing the work that needs none of that kernel's output (loading its tiles and gates; with log-space gates
    also the first direction's in-chunk terms), then waits (_common.wait_for_prior_grid). VIG_BIGLA_PDL=1 / 0 forces
    it on / off. Unset, with PDL_BY_DEFAULT: on for the saved-key route (save_key_states), where the do-states walk
    alone precedes it. H100, bf16, fwd+bwd GPU ms, plain twice against PDL twice, alternated in one process
    (benchmarks/NOTES_bigla.md, session 53): log-space gates ViG-T 224 0.399 / 0.400 against 0.394 / 0.394, ViG-S
    0.787 / 0.789 against 0.776 / 0.776, ViG-B 0.789 / 0.788 against 0.779 / 0.778; gate logits (the models' call,
    loads only before the wait) 0.416 / 0.417 against 0.413 / 0.413, 0.801 / 0.802 against 0.799 / 0.798, 0.804 /
    0.804 against 0.800 / 0.800. Off the saved-key route it did not pay: ViG-H-T stage 1 1.451 against 1.480, ViG-T
    1024² 0.732 against 0.736 (log-space gates). ViG-T training (CUDA graphs) 13,014 img/s with it, 13,002 without.
    (Session 52, with logits' in-chunk terms before the wait: 12 B of spills and 1.2-1.5% slower.)"""
    knob = os.environ.get("VIG_BIGLA_PDL") or None
    if knob is not None and knob not in ("0", "1"):
        raise ValueError(f"VIG_BIGLA_PDL must be 0 or 1, got {knob!r}")
    wanted = knob == "1" if knob is not None else (PDL_BY_DEFAULT and saved_keys)
    if not wanted or _interpreting() or not HAS_GDC:
        return False
    return torch.cuda.get_device_capability(device)[0] >= 9
