"""Intra-chunk terms of both directions, for one chunk of BT tokens.

Fast path (tensor-core dots): factor exp(a_t - a_s) = exp(a_t - a_m) exp(a_m - a_s) through the
chunk's middle row m. Each factor is at most 2^span, span = the chunk's largest summed |gate|
(log2 units), so it is used only while span <= SPAN_MAX. Stronger gates take the exact path:
a loop over the key row s with every exponent <= 0, no tensor cores, no [BT, BT, K] tensor.
The diagonal (decay 1, counted in both directions as the contract says) is kept apart: its parts
of q_t dq_t and k_t dk_t cancel exactly in the gate gradients, so leaving it out of dq^f, dk^f,
dq^b, dk^b avoids fp32 cancellation there; callers add 2 D_tt k_t, 2 D_tt q_t, and 2 q_t.k_t to P
(diag_scores), unless each direction's P keeps q_t.k_t once (P_DIAG: P feeds no gate gradient).
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import mm

SPAN_MAX = tl.constexpr(64.0)


@triton.jit
def chunk_span(ga, gc):
    """Largest summed |gate| over the chunk, either direction (log2 units; gates are <= 0)."""
    return tl.maximum(tl.max(-tl.sum(ga, axis=0), axis=0), tl.max(-tl.sum(gc, axis=0), axis=0))


@triton.jit
def _row(x, i, BT: tl.constexpr):
    idx = tl.arange(0, BT)
    return tl.sum(tl.where((idx == i)[:, None], x, 0.0), axis=0)


@triton.jit
def diag_scores(qq, kk, BT: tl.constexpr):
    """The scores' diagonal, decay 1 counted in both directions: 2 q_t.k_t at [t, t], else 0."""
    idx = tl.arange(0, BT)
    d = 2.0 * tl.sum(qq * kk, axis=1)
    return tl.where(idx[:, None] == idx[None, :], d[:, None], 0.0)


@triton.jit
def scores_fast(qq, kk, a, c, BT: tl.constexpr, PREC: tl.constexpr):
    return scores_fast_ref(qq, kk, a, c, _row(a, BT // 2, BT), _row(c, BT // 2, BT), BT, PREC)


@triton.jit
def scores_fast_ref(qq, kk, a, c, a_ref, c_ref, BT: tl.constexpr, PREC: tl.constexpr):
    """scores_fast through given references [K] for the factors: any value within the chunk's range of a (of c)
    keeps each factor at most 2^span; half the chunk's gate sum keeps it at most 2^(span / 2)."""
    idx = tl.arange(0, BT)
    am = a_ref[None, :]
    cm = c_ref[None, :]
    pf = mm(qq * tl.exp2(a - am), tl.trans(kk * tl.exp2(am - a)), PREC)
    pb = mm(qq * tl.exp2(c - cm), tl.trans(kk * tl.exp2(cm - c)), PREC)
    p = tl.where(idx[:, None] > idx[None, :], pf, 0.0) + tl.where(idx[:, None] < idx[None, :], pb, 0.0)
    return p + diag_scores(qq, kk, BT)


@triton.jit
def _pair_decay(g, s, idx, LOWER: tl.constexpr):
    """exp of the gate sum between key row s and every query row of one direction (LOWER: the
    forward direction, queries after s), taken as a partial sum from s itself: a difference of two
    chunk-wide prefix sums would lose fp32 bits when the gates are strong (|prefix| ~ 1e3 at -20 per token)."""
    if LOWER:
        side = (idx > s)[:, None]
        part = tl.cumsum(tl.where(side, g, 0.0), axis=0)
    else:
        side = (idx < s)[:, None]
        part = tl.cumsum(tl.where(side, g, 0.0), axis=0, reverse=True)
    return tl.exp2(tl.where(side, part, float("-inf")))


@triton.jit
def _pair_decays(ga, gc, s, idx):
    return _pair_decay(ga, s, idx, True), _pair_decay(gc, s, idx, False)


@triton.jit
def scores_exact(qq, kk, ga, gc, BT: tl.constexpr):
    """ga, gc: the chunk's raw gates (log2 units)."""
    idx = tl.arange(0, BT)
    p = tl.zeros([BT, BT], dtype=tl.float32)
    for s in range(0, BT):
        k_s = _row(kk, s, BT)[None, :]
        ef, eb = _pair_decays(ga, gc, s, idx)
        col = tl.sum(qq * k_s * (ef + eb), axis=1)
        p += tl.where(idx[None, :] == s, col[:, None], 0.0)
    return p + diag_scores(qq, kk, BT)


@triton.jit
def direction_grads_fast(qq, kk, x, dmat, LOWER: tl.constexpr, BT: tl.constexpr, PREC: tl.constexpr,
                         P_DIAG: tl.constexpr = False, P_PREC: tl.constexpr = ""):
    """One direction's strict-triangle dq, dk and scores P (x: its in-chunk cumulative gates, a or c; P_DIAG as
    direction_grads_fast_ref). Done per direction so the backward keeps half as many [BT, K] tiles alive at once."""
    return direction_grads_fast_ref(qq, kk, x, _row(x, BT // 2, BT), dmat, LOWER, BT, PREC, P_DIAG, P_PREC)


@triton.jit
def direction_grads_fast_ref(qq, kk, x, x_ref, dmat, LOWER: tl.constexpr, BT: tl.constexpr, PREC: tl.constexpr,
                             P_DIAG: tl.constexpr = False, P_PREC: tl.constexpr = ""):
    """direction_grads_fast through a given reference x_ref [K] for the factors (as scores_fast_ref). P_DIAG: P keeps
    its diagonal (q_t.k_t, decay 1, once: the two directions' P then sum to diag_scores there); dq, dk never do.
    P_PREC: the scores' dot precision where it differs from PREC (P feeds dv alone, never a gate gradient, so its
    rounding meets no cancelling sum)."""
    idx = tl.arange(0, BT)
    if LOWER:
        mask = idx[:, None] > idx[None, :]
        p_mask = idx[:, None] >= idx[None, :] if P_DIAG else mask
    else:
        mask = idx[:, None] < idx[None, :]
        p_mask = idx[:, None] <= idx[None, :] if P_DIAG else mask
    xm = x_ref[None, :]
    e_q = tl.exp2(x - xm)
    e_k = tl.exp2(xm - x)
    qs = qq * e_q
    ks = kk * e_k
    dm = tl.where(mask, dmat, 0.0)
    dq = e_q * mm(dm, ks, PREC)
    dk = e_k * mm(tl.trans(dm), qs, PREC)
    p = tl.where(p_mask, mm(qs, tl.trans(ks), PREC if P_PREC == "" else P_PREC), 0.0)
    return dq, dk, p


@triton.jit
def direction_grads_exact(qq, kk, g, dmat, LOWER: tl.constexpr, BT: tl.constexpr, K: tl.constexpr):
    """direction_grads_fast for strong gates (g: the raw gates, log2 units): exponents <= 0 only."""
    idx = tl.arange(0, BT)
    dq = tl.zeros([BT, K], dtype=tl.float32)
    dk = tl.zeros([BT, K], dtype=tl.float32)
    p = tl.zeros([BT, BT], dtype=tl.float32)
    for s in range(0, BT):
        at_s = idx[None, :] == s
        k_s = _row(kk, s, BT)[None, :]
        d_col = tl.sum(tl.where(at_s, dmat, 0.0), axis=1)[:, None]  # D[t, s] over t
        e = _pair_decay(g, s, idx, LOWER)
        dq += d_col * e * k_s
        dk += tl.where((idx == s)[:, None], tl.sum(d_col * e * qq, axis=0)[None, :], 0.0)
        p += tl.where(at_s, tl.sum(qq * k_s * e, axis=1)[:, None], 0.0)
    return dq, dk, p


@triton.jit
def grads_fast(qq, kk, a, c, dmat, BT: tl.constexpr, PREC: tl.constexpr):
    """dmat[t, s] = do_t . v_s. Returns strict-triangle dq^f, dk^f, dq^b, dk^b and the scores P."""
    dq_f, dk_f, p_f = direction_grads_fast(qq, kk, a, dmat, True, BT, PREC)
    dq_b, dk_b, p_b = direction_grads_fast(qq, kk, c, dmat, False, BT, PREC)
    return dq_f, dk_f, dq_b, dk_b, p_f + p_b + diag_scores(qq, kk, BT)


@triton.jit
def grads_exact(qq, kk, ga, gc, dmat, BT: tl.constexpr, K: tl.constexpr):
    dq_f, dk_f, p_f = direction_grads_exact(qq, kk, ga, dmat, True, BT, K)
    dq_b, dk_b, p_b = direction_grads_exact(qq, kk, gc, dmat, False, BT, K)
    return dq_f, dk_f, dq_b, dk_b, p_f + p_b + diag_scores(qq, kk, BT)
