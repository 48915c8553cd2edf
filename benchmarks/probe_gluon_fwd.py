"""Probe: the short-sequence BiGLA forward written in Gluon (triton.experimental.gluon, triton 3.6), with the layouts
of its tiles chosen by the kernel, against the Triton seq forward (`bigla_fwd`).

Why: the Triton seq forward at ViG-T's launch (2 warps, 16-token chunks, 26 serial chunk steps a sequence) takes
~3.8 us a chunk step, and its SASS holds 52 barriers, nearly all from layout conversions through shared memory
(benchmarks/NOTES_bigla.md, session 40). Triton picks those layouts itself; Gluon lets the kernel pick them. Here one
warp owns a sequence (mma v2, no tile split across warps, so no conversion crosses warps). q, k and the gates are
read in a blocked layout where each thread holds one channel's BT tokens (Gluon's scan does not lower in the dots'
operand layouts), so the gate scans and sums stay in a thread's registers; v is read straight into the B-operand
layout; each chunk step converts only the scaled q / k tiles, the scores and the [K, V] state into the dots' operand
layouts (13 conversions in the kernel).

Scope of the probe (not the op): bf16 q, k, v, gate logits (the models' call), contiguous [B, T, H, D], K, V = 32,
64, T <= 256 (no segments), the fast intra-chunk path only (chunks whose gate span would take the exact path are
counted, not computed: the report says how many), no saved key states. Prints JSON: relative RMSE against the Triton
forward and against float64, and GPU time (CUDA events, median of 50 after warmup) of both at ViG-T / S / B 224.

    python3 benchmarks/probe_gluon_fwd.py --out benchmarks/results/probe_gluon_fwd.json

Measured (session 41, H100, bf16, results/probe_gluon_fwd_h100_session41.json): right on the first run (relative
RMSE 3.20e-3 against float64 at ViG-T 224, the Triton forward's 3.18e-3; 2.1e-3 between the two), but **3x slower**:
ViG-T 224 0.295 ms against the Triton forward's 0.099 (0.224 with a 168-register cap; 0.306 at 128), ViG-S / B
0.59 against 0.19 (0.32 capped at 168). ptxas (sm_90a): 13 barriers in the kernel against the Triton forward's 52,
but 255 registers and ~4,100 SASS instructions for the two passes on one warp, which runs its 26 serial steps alone
(~11 us a step); the Triton forward splits each step's elementwise work over 2 warps. So the barriers were
not the forward's cost by themselves: a Gluon forward would need the step's work spread over warps without the
cross-warp conversions, e.g. a direction per warp (13 serial steps each) with the parts summed at the end.
"""
import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

LOG2E = gl.constexpr(1.4426950408889634)
SPAN_MAX = gl.constexpr(64.0)  # the op's fast-path limit (_intra.SPAN_MAX)
GATE_FLOOR_LOG2 = gl.constexpr(-300.0)


@gluon.jit
def _add(a, b):
    return a + b


@gluon.jit
def _log2_decay(x, ginv):
    """log2(sigmoid(x)) * ginv, floored as the op's kernels floor it."""
    ls = gl.minimum(x, 0.0) * LOG2E - gl.log2(1.0 + gl.exp2(-gl.abs(x) * LOG2E))
    return gl.maximum(ls * ginv, GATE_FLOOR_LOG2)


@gluon.jit
def _rows(base, t0, T, row_stride, R: gl.constexpr, D: gl.constexpr, layout: gl.constexpr):
    """Rows t0.. of a [T, D] view (row_stride apart, unit column stride) as an fp32 [R, D] tile in `layout`; rows
    >= T read as 0."""
    t = t0 + gl.arange(0, R, layout=gl.SliceLayout(1, layout))
    d = gl.arange(0, D, layout=gl.SliceLayout(0, layout))
    mask = (t < T)[:, None] & (d < D)[None, :]
    return gl.load(base + t[:, None].to(gl.int64) * row_stride + d[None, :], mask=mask, other=0.0).to(gl.float32)


@gluon.jit
def _gate(base, t0, T, row_stride, ginv, R: gl.constexpr, D: gl.constexpr, layout: gl.constexpr):
    g = _log2_decay(_rows(base, t0, T, row_stride, R, D, layout), ginv)
    t = t0 + gl.arange(0, R, layout=gl.SliceLayout(1, layout))
    return gl.where((t < T)[:, None], g, 0.0)


@gluon.jit
def _op(x, layout: gl.constexpr):
    return gl.convert_layout(x.to(gl.bfloat16), layout)


@gluon.jit
def _op_t(x, layout: gl.constexpr):
    return gl.convert_layout(gl.permute(x.to(gl.bfloat16), [1, 0]), layout)


@gluon.jit
def bigla_fwd_gluon_kernel(q, k, v, gf, gb, o, ob, flags, T, H, scale, ginv,
                           K: gl.constexpr, V: gl.constexpr, BT: gl.constexpr):
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1], instr_shape=[16, 8])
    opa: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    opb: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    # each thread holds one channel of all BT tokens: the token scans and sums stay in its registers
    cols: gl.constexpr = gl.BlockedLayout(size_per_thread=[BT, 1], threads_per_warp=[1, 32], warps_per_cta=[1, 1],
                                          order=[0, 1])
    i_bh = gl.program_id(0).to(gl.int64)
    b = i_bh // H
    h = i_bh % H
    rk = H * K  # row strides of [B, T, H, D] tensors
    rv = H * V
    q += (b * T * H + h) * K
    k += (b * T * H + h) * K
    gf += (b * T * H + h) * K
    gb += (b * T * H + h) * K
    v += (b * T * H + h) * V
    o += (b * T * H + h) * V
    ob += i_bh * T * V
    nc = gl.cdiv(T, BT)
    rows_m = gl.arange(0, BT, layout=gl.SliceLayout(1, mma))
    cols_v = gl.arange(0, V, layout=gl.SliceLayout(0, mma))
    cols_t = gl.arange(0, BT, layout=gl.SliceLayout(0, mma))

    # pass 1, right to left: the backward direction's inter-chunk term into ob (fp32, in this warp's own layout)
    s_b = gl.zeros([K, V], gl.float32, mma)
    for j in range(0, nc):
        t0 = (nc - 1 - j) * BT
        qq = _rows(q, t0, T, rk, BT, K, cols)
        kk = _rows(k, t0, T, rk, BT, K, cols)
        gc = _gate(gb, t0, T, rk, ginv, BT, K, cols)
        c = gl.associative_scan(gc, 0, _add, reverse=True)
        c_first = gl.sum(gc, axis=0)
        part = mma_v2(_op(qq * gl.exp2(c), opa), _op(s_b, opb), gl.zeros([BT, V], gl.float32, mma))
        rows = t0 + rows_m
        gl.store(ob + rows[:, None] * V + cols_v[None, :], part, mask=(rows < T)[:, None])
        vb = _rows(v, t0, T, rv, BT, V, opb).to(gl.bfloat16)
        decay = gl.convert_layout(gl.exp2(c_first), gl.SliceLayout(1, mma))
        s_b = mma_v2(_op_t(kk * gl.exp2(c_first[None, :] - c), opa), vb, s_b * decay[:, None])

    # pass 2, left to right: in-chunk scores of both directions, the forward direction's inter-chunk term, ob
    s_f = gl.zeros([K, V], gl.float32, mma)
    n_exact = gl.program_id(0) * 0
    for j in range(0, nc):
        t0 = j * BT
        qq = _rows(q, t0, T, rk, BT, K, cols)
        kk = _rows(k, t0, T, rk, BT, K, cols)
        ga = _gate(gf, t0, T, rk, ginv, BT, K, cols)
        gc = _gate(gb, t0, T, rk, ginv, BT, K, cols)
        a = gl.associative_scan(ga, 0, _add)
        c = gl.associative_scan(gc, 0, _add, reverse=True)
        a_last = gl.sum(ga, axis=0)
        c_first = gl.sum(gc, axis=0)
        n_exact += (gl.maximum(gl.max(-a_last, axis=0), gl.max(-c_first, axis=0)) > SPAN_MAX).to(gl.int32)
        am = (a_last * 0.5)[None, :]
        cm = (c_first * 0.5)[None, :]
        zeros_s = gl.zeros([BT, BT], gl.float32, mma)
        pf = mma_v2(_op(qq * gl.exp2(a - am), opa), _op_t(kk * gl.exp2(am - a), opb), zeros_s)
        pb = mma_v2(_op(qq * gl.exp2(c - cm), opa), _op_t(kk * gl.exp2(cm - c), opb), zeros_s)
        # each direction's P keeps the diagonal (decay 1): the contract counts it twice
        lower = rows_m[:, None] >= cols_t[None, :]
        upper = rows_m[:, None] <= cols_t[None, :]
        p = gl.where(lower, pf, 0.0) + gl.where(upper, pb, 0.0)
        vb = _rows(v, t0, T, rv, BT, V, opb).to(gl.bfloat16)
        rows = t0 + rows_m
        acc = gl.load(ob + rows[:, None] * V + cols_v[None, :], mask=(rows < T)[:, None], other=0.0)
        acc = mma_v2(_op(p, opa), vb, acc)
        acc = mma_v2(_op(qq * gl.exp2(a), opa), _op(s_f, opb), acc)
        gl.store(o + rows[:, None] * rv + cols_v[None, :], (acc * (scale * 0.5)).to(gl.bfloat16),
                 mask=(rows < T)[:, None])
        decay = gl.convert_layout(gl.exp2(a_last), gl.SliceLayout(1, mma))
        s_f = mma_v2(_op_t(kk * gl.exp2(a_last[None, :] - a), opa), vb, s_f * decay[:, None])
    gl.atomic_add(flags, n_exact)


def gluon_forward(q, k, v, gf, gb, scale, normalizer, **launch):
    B, T, H, K = q.shape
    V = v.shape[-1]
    o = torch.empty_like(v)
    ob = torch.empty(B * H, T, V, device=q.device, dtype=torch.float32)
    flags = torch.zeros(1, device=q.device, dtype=torch.int32)
    bigla_fwd_gluon_kernel[(B * H,)](q, k, v, gf, gb, o, ob, flags, T, H, float(scale), 1.0 / normalizer,
                                     K=K, V=V, BT=16, num_warps=1, **launch)
    return o, flags


SHAPES = {"ViG-T 224": (256, 196, 3, 32, 64), "ViG-S 224": (256, 196, 6, 32, 64), "ViG-B 224": (128, 196, 12, 32, 64)}


def _inputs(shape, seed=0):
    B, T, H, K, V = shape
    g = torch.Generator(device="cuda").manual_seed(seed)
    mk = lambda d: torch.randn(B, T, H, d, device="cuda", generator=g).to(torch.bfloat16)  # noqa: E731
    # logits ~ N(0, 4): per-token decays from ~1 down to sigmoid(-6)^(1/16), ~0.73
    return mk(K) * 0.3, mk(K) * 0.3, mk(V), mk(K) * 2.0, mk(K) * 2.0


def _case(shape, dev, args):
    from vig.bench.timing import gpu_ms
    from vig.ops.bigla import bigla
    from vig.ops.bigla.naive import bigla_naive
    from vig.ops.bigla.triton.launch import bigla_fwd
    q, k, v, gf, gb = _inputs(shape)
    scale, norm = shape[3] ** -0.5, 16.0
    ref = bigla_fwd(q, k, v, gf, gb, scale, norm)
    got, flags = gluon_forward(q, k, v, gf, gb, scale, norm)
    rel = (got.float() - ref.float()).pow(2).mean().sqrt() / ref.float().pow(2).mean().sqrt()
    row = {"exact_path_chunks": int(flags.item()), "rel_rmse_vs_triton": float(rel)}
    if shape == SHAPES["ViG-T 224"]:  # float64 oracle on a slice of the batch
        sl = slice(0, 8)
        args64 = [t[sl].double() for t in (q, k, v)]
        gates = [torch.nn.functional.logsigmoid(t[sl].double()) / norm for t in (gf, gb)]
        exact = bigla_naive(*args64, *gates, scale=scale)
        for label, t in (("gluon", got[sl]), ("triton", ref[sl])):
            row[f"rel_rmse_{label}_vs_float64"] = float((t.double() - exact).pow(2).mean().sqrt()
                                                        / exact.pow(2).mean().sqrt())
    row["triton_ms"] = gpu_ms(lambda: bigla_fwd(q, k, v, gf, gb, scale, norm), dev)
    row["gluon_ms"] = gpu_ms(lambda: gluon_forward(q, k, v, gf, gb, scale, norm), dev)
    for cap in (168, 128):  # more programs an SM, at the price of spills
        capped, _ = gluon_forward(q, k, v, gf, gb, scale, norm, maxnreg=cap)
        row[f"gluon_maxnreg{cap}_ms"] = gpu_ms(lambda: gluon_forward(q, k, v, gf, gb, scale, norm, maxnreg=cap), dev)
        row[f"gluon_maxnreg{cap}_same"] = bool(torch.equal(capped, got))
    row["op_ms"] = gpu_ms(lambda: bigla(q, k, v, gf, gb, scale=scale, gate_logit_normalizer=norm), dev)
    return row


def main():
    from vig.bench.micro import micro_main
    micro_main(_case, SHAPES, {"dtype": "bf16"})


if __name__ == "__main__":
    main()
