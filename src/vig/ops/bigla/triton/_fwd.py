"""Forward kernel: one program owns one segment of one (batch, head) sequence.

Short path (T <= 256): one segment is the whole sequence, no initial states.
Long path: segments of L tokens, initial states from the segment scan (_states.py).
Pass 1 walks the chunks right to left carrying the backward-direction state S^b and
writes only its inter-chunk term q_t exp(c_t) S^b (fp32 scratch, [BH, T, V]).
Pass 2 walks left to right carrying S^f; it reads q, k, v once for both directions:
the intra-chunk scores of both directions (_intra.py) are summed before the one
(P^f + P^b) v dot, then o is written once.
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import (at_head, load_chunk_gates, load_state, load_tile, mm, store_state,
                                          store_tile, switch)
from vig.ops.bigla.triton._intra import SPAN_MAX, chunk_span, scores_exact, scores_fast, scores_fast_ref


def _half_sum_ref_setting() -> bool:
    return switch("VIG_BIGLA_HALF_SUM_REF", "1")


# Read once, when the kernels are defined (an A/B knob for separate processes, like _common.FAST_LOG2): on (the
# default), _scores' fast path takes half the chunk's gate sums as its factor references instead of the middle
# row; the span check has computed those sums already, so no row pick is left, and each factor stays within
# 2^(span / 2). Measured in one run (H200, bf16, NOTES session 15): the seq forward 0.133 -> 0.117 ms at ViG-T 224,
# 0.221 -> 0.197 at ViG-S 224 (launch-specialized local compile, 4 warps: 165 -> 149 registers). 0 restores the
# middle row.
HALF_SUM_REF = tl.constexpr(_half_sum_ref_setting())


@triton.jit
def _initial_state(init, idx, K: tl.constexpr, V: tl.constexpr, HAS_INIT: tl.constexpr):
    """The state entering a segment (init[idx], [K, V]; zero without HAS_INIT)."""
    if HAS_INIT:
        s = load_state(init + idx * K * V, K, V)
    else:
        s = tl.zeros([K, V], dtype=tl.float32)
    return s


@triton.jit
def _next_state(s, decay, kd, vv, PREC: tl.constexpr):
    """S decayed per key row plus kd^T vv."""
    return s * decay[:, None] + mm(tl.trans(kd), vv, PREC)


@triton.jit
def _chunk_tiles(q, k, v, gf, gb, t0, s1, sqt, sqd, skt, skd, svt, svd, sft, sfd, sgt, sgd, ginv, K: tl.constexpr,
                 V: tl.constexpr, BT: tl.constexpr, RAW: tl.constexpr):
    """q, k, v and both gates of the chunk at t0, with the gates' in-chunk sums: a (from the left edge), c (to the
    right edge), a_last and c_first (the whole chunk)."""
    qq = load_tile(q, t0, s1, sqt, sqd, K, BT)
    kk = load_tile(k, t0, s1, skt, skd, K, BT)
    vv = load_tile(v, t0, s1, svt, svd, V, BT)
    ga, gc, a, c, a_last, c_first = load_chunk_gates(gf, gb, t0, s1, sft, sfd, sgt, sgd, K, BT, RAW, ginv)
    return qq, kk, vv, ga, gc, a, c, a_last, c_first


@triton.jit
def _scores(qq, kk, ga, gc, a, c, a_last, c_first, any_exact, BT: tl.constexpr, PREC: tl.constexpr,
            FAST_ONLY: tl.constexpr):
    """Both directions' intra-chunk scores (the fast path, or the exact one where the chunk's gate span needs
    it) and the updated flag; a_last, c_first: the gates' chunk sums (_chunk_tiles)."""
    exact = chunk_span(ga, gc) > SPAN_MAX
    any_exact |= exact
    if FAST_ONLY:
        p = _fast(qq, kk, a, c, a_last, c_first, BT, PREC)
    elif exact:
        p = scores_exact(qq, kk, ga, gc, BT)
    else:
        p = _fast(qq, kk, a, c, a_last, c_first, BT, PREC)
    return p, any_exact


@triton.jit
def _fast(qq, kk, a, c, a_last, c_first, BT: tl.constexpr, PREC: tl.constexpr):
    if HALF_SUM_REF:
        return scores_fast_ref(qq, kk, a, c, a_last * 0.5, c_first * 0.5, BT, PREC)
    else:
        return scores_fast(qq, kk, a, c, BT, PREC)


@triton.jit
def _segment(q, k, v, gf, gb, o, ob, init, kst, i_bh, i_s, sqt, sqd, skt, skd, svt, svd, sft, sfd, sgt, sgd, sot,
             sod, T, L, NS, BH, scale, ginv, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
             HAS_INIT: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, FAST_ONLY: tl.constexpr,
             SAVE_KEYS: tl.constexpr):
    """o of one segment (pointers already at its (batch, head)). FAST_ONLY: every chunk takes the fast
    intra-chunk path (no exact-path code compiled in); returns whether some chunk needed the exact path.
    SAVE_KEYS (one segment only): also the key states entering every chunk, S^f and S^b, into kst [2, NT, BH, K, V]
    in the layout of the backward's states walk, which then walks only the two do states (config.save_key_states)."""
    s0 = i_s * L
    s1 = tl.minimum(s0 + L, T)
    nc = tl.cdiv(s1 - s0, BT)
    # init: [4, NS, BH, K, V]; 0 = S^f entering from the left, 1 = S^b from the right
    s_b = _initial_state(init, (1 * NS + i_s) * BH + i_bh, K, V, HAS_INIT)
    for j in range(0, nc):
        t0 = s0 + (nc - 1 - j) * BT
        # only g_bwd's sums are used here: the unused g_fwd load is dead code, compiled away
        qq, kk, vv, _, _, _, c, _, c_first = _chunk_tiles(q, k, v, gf, gb, t0, s1, sqt, sqd, skt, skd, svt, svd,
                                                          sft, sfd, sgt, sgd, ginv, K, V, BT, RAW)
        store_tile(ob, mm(qq * tl.exp2(c), s_b, PREC), t0, s1, V, 1, V, BT)
        if SAVE_KEYS:
            store_state(kst + ((tl.cdiv(T, BT) + t0 // BT) * BH + i_bh) * K * V, s_b, K, V)
        kd = kk * tl.exp2(c_first[None, :] - c)
        s_b = _next_state(s_b, tl.exp2(c_first), kd, vv, PREC)

    # pass 2 reads scratch rows that other threads of this program wrote in pass 1
    tl.debug_barrier()
    s_f = _initial_state(init, (0 * NS + i_s) * BH + i_bh, K, V, HAS_INIT)
    any_exact = s0 < 0  # False, as a runtime value the loop can update
    for j in range(0, nc):
        t0 = s0 + j * BT
        qq, kk, vv, ga, gc, a, c, a_last, c_first = _chunk_tiles(q, k, v, gf, gb, t0, s1, sqt, sqd, skt, skd, svt,
                                                                 svd, sft, sfd, sgt, sgd, ginv, K, V, BT, RAW)
        p, any_exact = _scores(qq, kk, ga, gc, a, c, a_last, c_first, any_exact, BT, PREC, FAST_ONLY)
        acc = mm(p, vv, PREC)
        acc += mm(qq * tl.exp2(a), s_f, PREC)
        acc += load_tile(ob, t0, s1, V, 1, V, BT)
        store_tile(o, acc * (scale * 0.5), t0, s1, sot, sod, V, BT)
        if SAVE_KEYS:
            store_state(kst + (t0 // BT * BH + i_bh) * K * V, s_f, K, V)
        kd = kk * tl.exp2(a_last[None, :] - a)
        s_f = _next_state(s_f, tl.exp2(a_last), kd, vv, PREC)
    return any_exact


@triton.jit(do_not_specialize=["T", "H", "L", "NS", "BH"])
def bigla_fwd_kernel(
    q, k, v, gf, gb, o, ob, init, flags, kst,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sob, sot, soh, sod,
    T, H, L, NS, BH, scale, ginv,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, HAS_INIT: tl.constexpr, PREC: tl.constexpr,
    RAW: tl.constexpr, EXACT_MODE: tl.constexpr = 0, SAVE_KEYS: tl.constexpr = False,
):
    """EXACT_MODE 0: each chunk takes the fast or the exact intra-chunk path at run time (both compiled in);
    1: every chunk the fast path, and flags[BH, NS] marks the segments where some chunk needed the exact one;
    2: only flagged segments, recomputed with both paths. A launch of 1 then 2 gives mode 0's o, and the
    first kernel carries no exact-path code (its registers). kst: see _segment's SAVE_KEYS (untouched without it)."""
    i_bh = tl.program_id(0).to(tl.int64)  # B*H on grid axis 0: axis 1 is capped at 65535
    i_s = tl.program_id(1).to(tl.int64)
    b = i_bh // H
    h = i_bh % H
    q, k, v, gf, gb, o = at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, o, sob, soh)
    ob += i_bh * T * V
    flag = flags + i_bh * NS + i_s
    if EXACT_MODE == 1:
        any_exact = _segment(q, k, v, gf, gb, o, ob, init, kst, i_bh, i_s, sqt, sqd, skt, skd, svt, svd, sft, sfd,
                             sgt, sgd, sot, sod, T, L, NS, BH, scale, ginv, K, V, BT, HAS_INIT, PREC, RAW, True,
                             SAVE_KEYS)
        tl.store(flag, any_exact.to(tl.int32))
    elif EXACT_MODE == 2:
        if tl.load(flag) != 0:
            _segment(q, k, v, gf, gb, o, ob, init, kst, i_bh, i_s, sqt, sqd, skt, skd, svt, svd, sft, sfd, sgt, sgd,
                     sot, sod, T, L, NS, BH, scale, ginv, K, V, BT, HAS_INIT, PREC, RAW, False, SAVE_KEYS)
    else:
        _segment(q, k, v, gf, gb, o, ob, init, kst, i_bh, i_s, sqt, sqd, skt, skd, svt, svd, sft, sfd, sgt, sgd,
                 sot, sod, T, L, NS, BH, scale, ginv, K, V, BT, HAS_INIT, PREC, RAW, False, SAVE_KEYS)
