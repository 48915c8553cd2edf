"""Triton helpers shared by the forward, backward and segment-state kernels.

All decays are carried in log2 units (g * log2(e)) so every exponential is one exp2.
Between chunks every exponent is a partial sum of gates from an earlier to a later
position of the same direction, hence <= 0: nothing can overflow, whatever the gates.
Inside a chunk see _intra.py.
"""
import os

import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice

from vig.ops.knobs import switch

# triton's interpreter multiplies bf16 tiles in tl.dot as integers (their stored bits): emulate there
_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"
INTERPRET = tl.constexpr(_INTERPRETING)
BF16_DOT_MODE = tl.constexpr(2 if _INTERPRETING else 1)  # see _dot_bf16
LOG2E = tl.constexpr(1.4426950408889634)

try:  # grid dependency control (Hopper's programmatic dependent launch); triton builds without it launch plainly
    from triton.language.extra.cuda import gdc_launch_dependents as _gdc_launch_dependents
    from triton.language.extra.cuda import gdc_wait as _gdc_wait
    HAS_GDC = True
except ImportError:  # pragma: no cover - depends on the installed triton
    HAS_GDC = False

    @triton.jit
    def _gdc_wait():
        pass

    @triton.jit
    def _gdc_launch_dependents():
        pass


@triton.jit
def wait_for_prior_grid(PDL: tl.constexpr):
    """PDL: block until the kernel launched before this one has finished and its writes are visible. Everything
    a program does before this call must not read what that kernel writes (config.programmatic_launch)."""
    if PDL:
        _gdc_wait()


@triton.jit
def allow_next_grid(PDL: tl.constexpr):
    """PDL: let the next kernel, if launched with launch_pdl, start its programs now (they wait in
    wait_for_prior_grid before reading what this one writes)."""
    if PDL:
        _gdc_launch_dependents()


@triton.jit
def load_tile(base, t0, t_end, stride_t, stride_d, D: tl.constexpr, BT: tl.constexpr, DT: tl.constexpr = tl.float32):
    """Rows [t0, t0+BT) of a [T, D] strided view as DT (fp32 by default); rows >= t_end read as 0."""
    rows = t0 + tl.arange(0, BT)
    cols = tl.arange(0, D)
    ptrs = base + rows[:, None].to(tl.int64) * stride_t + cols[None, :] * stride_d
    return tl.load(ptrs, mask=(rows < t_end)[:, None], other=0.0).to(DT)


@triton.jit
def store_tile(base, x, t0, t_end, stride_t, stride_d, D: tl.constexpr, BT: tl.constexpr):
    rows = t0 + tl.arange(0, BT)
    cols = tl.arange(0, D)
    ptrs = base + rows[:, None].to(tl.int64) * stride_t + cols[None, :] * stride_d
    tl.store(ptrs, x.to(base.dtype.element_ty), mask=(rows < t_end)[:, None])


@triton.jit
def load_state(base, K: tl.constexpr, V: tl.constexpr, DT: tl.constexpr = tl.float32):
    """A [K, V] chunk state as DT (fp32 by default), whether stored in fp32 or bf16."""
    return tl.load(base + tl.arange(0, K)[:, None] * V + tl.arange(0, V)[None, :]).to(DT)


@triton.jit
def at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, y, syb, syh):
    """q, k, v, both gates and y (do, or the output o) advanced to batch b, head h of their [B, T, H, D] layouts."""
    return (q + b * sqb + h * sqh, k + b * skb + h * skh, v + b * svb + h * svh, gf + b * sfb + h * sfh,
            gb + b * sgb + h * sgh, y + b * syb + h * syh)


@triton.jit
def store_state(base, s, K: tl.constexpr, V: tl.constexpr):
    """s, a [K, V] state, stored at base in load_state's layout and base's dtype."""
    tl.store(base + tl.arange(0, K)[:, None] * V + tl.arange(0, V)[None, :], s.to(base.dtype.element_ty))


# exp2(-300) is 0 in fp32, so the floor changes no value, but it keeps a hard reset (g = -inf) from
# turning the in-chunk differences of gate sums into (-inf) - (-inf) = nan (chunk.py does the same)
GATE_FLOOR_LOG2 = tl.constexpr(-300.0)


LN2 = tl.constexpr(0.6931471805599453)


def _fast_log2_setting() -> bool:
    return switch("VIG_BIGLA_FAST_LOG2", "1")


# Read once, when the kernels are defined (triton keys its compiled kernels on this global): an A/B knob for
# separate processes. 1: log2 of the gate logits' 1 + u, in (1, 2], as the hardware's lg2.approx (one MUFU op,
# absolute error about 2^-22) instead of libdevice's log2f (a 10-term polynomial behind a branch per element)
FAST_LOG2 = tl.constexpr(_fast_log2_setting())


@triton.jit
def _log2_1_to_2(w):
    if INTERPRET or not FAST_LOG2:
        return tl.log2(w)
    else:
        return libdevice.fast_log2f(w)


@triton.jit
def log2_sigmoid(x):
    """log2(sigmoid(x)) = min(x, 0) log2(e) - log2(1 + u), u = 2^(-|x| log2(e)), in fp32 without a division
    (one ex2, and one lg2 with FAST_LOG2). w = 1 + u drops the low bits of u (all of
    them for u < 2^-24, i.e. large logits, whose decays differ from 1 by less than 1e-7);
    log(1 + u) = log(w) + (u - (w - 1)) / w puts them back, with 1 / w taken as 2 - w (exact enough for a
    correction below 2^-24)."""
    u = tl.exp2(-tl.abs(x) * LOG2E)
    w = 1.0 + u
    return tl.minimum(x, 0.0) * LOG2E - (_log2_1_to_2(w) + (u - (w - 1.0)) * (2.0 - w) * LOG2E)


@triton.jit
def log_sigmoid(x):
    return log2_sigmoid(x) * LN2


@triton.jit
def load_gate(base, t0, t_end, stride_t, stride_d, D: tl.constexpr, BT: tl.constexpr, RAW: tl.constexpr, ginv):
    """A gate tile in log2 units, floored; rows >= t_end are 0 (decay 1: no effect on any sum or span).
    RAW: base holds gate logits x, the decay is logsigmoid(x) * ginv (ginv = 1 / gate_logit_normalizer),
    computed here in fp32 from the stored logits."""
    g = load_tile(base, t0, t_end, stride_t, stride_d, D, BT)
    if RAW:
        # a padded row reads x = 0, a real decay of sigmoid(0); a segment ending inside a tile would count it
        rows = t0 + tl.arange(0, BT)
        g = tl.where((rows < t_end)[:, None], log2_sigmoid(g) * ginv, 0.0)
    else:
        g = g * LOG2E
    return tl.maximum(g, GATE_FLOOR_LOG2)


@triton.jit
def logit_grad_scale(base, t0, t_end, stride_t, stride_d, D: tl.constexpr, BT: tl.constexpr, ginv):
    """d(logsigmoid(x) * ginv) / dx = sigmoid(-x) * ginv, for the logits tile at base."""
    return tl.sigmoid(-load_tile(base, t0, t_end, stride_t, stride_d, D, BT)) * ginv


@triton.jit
def cumsum_rows_dot(x, BT: tl.constexpr, REVERSE: tl.constexpr, EXCLUSIVE: tl.constexpr = False):
    """tl.cumsum(x, axis=0[, reverse]) of an fp32 [BT, D] tile (EXCLUSIVE: each row's own value left out) as dots
    with a 0/1 triangle: x split into three bf16 parts (24 bits, fp32's mantissa), each product exact, fp32
    accumulation. Its result is in the dots' layout, where tl.cumsum works in the loads' layout, so a tile that
    comes from dots or goes into them takes no layout conversion through shared memory."""
    idx = tl.arange(0, BT)
    if REVERSE:
        keep = idx[:, None] < idx[None, :] if EXCLUSIVE else idx[:, None] <= idx[None, :]
    else:
        keep = idx[:, None] > idx[None, :] if EXCLUSIVE else idx[:, None] >= idx[None, :]
    # (a bool tile cast straight to bf16 comes out wrong under triton 3.8's interpreter)
    return _split_dots(tl.where(keep, 1.0, 0.0).to(tl.bfloat16), x)


@triton.jit
def gate_sums(ga, gc):
    """The forwards' in-chunk gate sums of [BT, K] tiles: g_fwd's inclusive prefix sum and g_bwd's inclusive suffix
    sum, by tl.cumsum. As 0/1-triangle dots (cumsum_rows_dot, the backward's and the states walk's form) they
    spilled in the seq forward: the forward took 1.12-1.13x its time at ViG-H-T stage 1 and was no faster elsewhere
    (H100, sessions 25 and 28; that route was removed in session 28)."""
    return tl.cumsum(ga, axis=0), tl.cumsum(gc, axis=0, reverse=True)


@triton.jit
def load_chunk_gates(gf, gb, t0, t_end, sft, sfd, sgt, sgd, K: tl.constexpr, BT: tl.constexpr, RAW: tl.constexpr,
                     ginv):
    """One chunk's two gate tiles (log2 units), their in-chunk sums (gate_sums) and their totals over the chunk."""
    ga = load_gate(gf, t0, t_end, sft, sfd, K, BT, RAW, ginv)
    gc = load_gate(gb, t0, t_end, sgt, sgd, K, BT, RAW, ginv)
    a, c = gate_sums(ga, gc)
    return ga, gc, a, c, tl.sum(ga, axis=0), tl.sum(gc, axis=0)


@triton.jit
def advance_state(s, xx, yy, gg, C: tl.constexpr, LEFT_TO_RIGHT: tl.constexpr, EXCLUSIVE: tl.constexpr,
                  PREC: tl.constexpr):
    """A state walk's step over one chunk: fp32 s decayed by the chunk's gate sum gg per key row, plus xw^T yy, xw
    the rows xx decayed to the far edge (LEFT_TO_RIGHT: row t to the right edge, else the left edge to row t;
    EXCLUSIVE: a key's own gate left out). Returns (s, the chunk's gate sum)."""
    xw = tl.trans(xx * tl.exp2(cumsum_rows_dot(gg, C, LEFT_TO_RIGHT, EXCLUSIVE)))
    gsum = tl.sum(gg, axis=0)
    return s * tl.exp2(gsum)[:, None] + mm(xw, yy, PREC), gsum


@triton.jit
def _split_dots(tri, x):
    """tri @ x, exact to fp32's 24 bits: x as three bf16 parts, the smallest first, each dot accumulating onto the
    last (no separate adds)."""
    hi = x.to(tl.bfloat16)
    rest = x - hi.to(tl.float32)
    mid = rest.to(tl.bfloat16)
    lo = (rest - mid.to(tl.float32)).to(tl.bfloat16)
    acc = _dot_bf16(tri, lo, BF16_DOT_MODE)
    acc = _dot_bf16(tri, mid, BF16_DOT_MODE, acc)
    return _dot_bf16(tri, hi, BF16_DOT_MODE, acc)


@triton.jit
def _to_bf16(x):
    """x rounded to the nearest bf16 (ties to even), as the GPU converts. Under the interpreter, whose own
    conversion truncates and whose bf16 dots multiply the stored bits as integers, the rounding is done on the
    bits and the values stay fp32 (for _dot_bf16's fp32 mode)."""
    if INTERPRET:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return x.to(tl.bfloat16)


@triton.jit
def as_stored(x, P):
    """x in P's element type, bf16 rounded to nearest as the GPU converts (the interpreter's own cast truncates)."""
    if INTERPRET and P.dtype.element_ty == tl.bfloat16:
        x = _to_bf16(x)
    return x.to(P.dtype.element_ty)


@triton.jit
def dot_acc(a, b, acc, IEEE: tl.constexpr):
    """acc + a @ b (acc None: a @ b), fp32 accumulation, for tiles in their stored dtype: IEEE, full-precision fp32
    dots; else tensor-core dots. Under the interpreter, whose half-precision dots multiply the stored bits as
    integers, fp32 dots of the same values (their products are exact in fp32)."""
    if INTERPRET:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def mm(a, b, PREC: tl.constexpr):
    """tl.dot with fp32 accumulation. PREC "bf16": both operands rounded to bf16 (half the registers
    and twice the tensor-core rate of tf32; bf16 keeps fp32's range, so the in-chunk decay factors,
    up to 2^SPAN_MAX, cannot overflow as they would in fp16). Else tl.dot's input_precision."""
    if PREC == "bf16":
        return _dot_bf16(_to_bf16(a), _to_bf16(b), BF16_DOT_MODE)
    else:
        return tl.dot(a, b, input_precision=PREC)



@triton.jit
def _dot_bf16(a, b, BF16_OPS: tl.constexpr, acc=None):
    """A dot of bf16 tiles, fp32 accumulation (onto acc, if given). BF16_OPS == 2: as fp32 dots, the same numbers
    (bf16 products are exact in fp32), for triton's interpreter, whose bf16 dot multiplies the stored bits as
    integers."""
    if BF16_OPS == 2:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def mm_bf16_rounded(a, b, BF16_OPS: tl.constexpr):
    """a @ b for a bf16 tile b, with fp32 a rounded to bf16 (_to_bf16). One dot; a's rounding error stays."""
    return _dot_bf16(_to_bf16(a), b, BF16_OPS)


@triton.jit
def mm_bf16_rhs(a, b, PREC: tl.constexpr, BF16_OPS: tl.constexpr):
    """a @ b with fp32 accumulation. BF16_OPS (1, or 2 under the interpreter): b holds bf16 values (bf16
    inputs or bf16-stored states), so a product with b is exact in fp32 once a is split: a = hi + lo, both
    bf16, two bf16 dots (lo carries a's rounding error, so the result is off by about 2^-17 relative,
    against tf32's 2^-11), with bf16 tiles in the registers instead of fp32 ones. A bf16 a takes one dot,
    exact. Else mm(a, b, PREC) on fp32 operands."""
    if BF16_OPS:
        if a.dtype == tl.bfloat16:
            return _dot_bf16(a, b, BF16_OPS)
        hi = a.to(tl.bfloat16)
        return _dot_bf16(hi, b, BF16_OPS) + _dot_bf16((a - hi.to(tl.float32)).to(tl.bfloat16), b, BF16_OPS)
    else:
        return mm(a.to(tl.float32), b.to(tl.float32), PREC)
