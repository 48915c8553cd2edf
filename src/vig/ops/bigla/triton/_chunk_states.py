"""Chunk-parallel path, step 1: the states entering every chunk, one light sequential walk each.

Each program walks one (batch*head) sequence, or one segment of it, chunk by chunk for ONE state and
stores the state as it enters each chunk ([n_states, NT, BH, K, V]; fp32, or bf16 for half inputs, see
launch.state_dtype); the heavy per-chunk work then runs
fully in parallel (_chunk_fwd.py, _chunk_bwd.py). A step is one [K, C] x [C, V] dot, so the
sequential part is short even at C = 64.

State index (all referenced at the chunk edge they enter through, every decay exp2(<= 0)):
  0  S^f   = sum_{s < c0} exp(A_{c0-1} - A_s) k_s v_s^T        left to right, g_fwd
  1  S^b   = sum_{s >= c1} exp(C_{c1} - C_s) k_s v_s^T          right to left, g_bwd
  2  dS^f  = sum_{t >= c1} exp(A_t - A_{c1-1}) q_t do_t^T       right to left, g_fwd (backward only)
  3  dS^b  = sum_{t < c0} exp(C_t - C_{c0}) q_t do_t^T          left to right, g_bwd (backward only)
A = inclusive prefix sum of g_fwd, C = inclusive suffix sum of g_bwd, chunk = [c0, c1).
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import at_head, load_gate, load_state, load_tile, mm, store_state


@triton.jit
def _walk(x, y, g, st, init, sxt, sxd, syt, syd, sgt, sgd, T, c_lo, c_hi, BH, i_bh, ysc, ginv,
          K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, LEFT_TO_RIGHT: tl.constexpr,
          EXCLUSIVE: tl.constexpr, HAS_INIT: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
          STORE: tl.constexpr = True, LOCAL: tl.constexpr = False, gsums=None):
    """Walk chunks [c_lo, c_hi) starting from `init` (the state entering that span in the walk's
    direction) or zero. EXCLUSIVE: keys (k_s v_s enters the state undecayed by its own gate); else
    queries (q_t do_t is decayed by g_t too, because the pair (t, s) spans g_t). STORE: write the state
    entering each chunk to st; returns the state leaving the span (entering the chunk past it).
    LOCAL: no walk; chunk c_lo's own term goes to its slot of st and its gate sums to gsums (for
    state_scan_kernel)."""
    if LOCAL:
        term, gsum = _chunk_term(x, y, g, sxt, sxd, syt, syd, sgt, sgd, T, c_lo, ysc, ginv, K, V, C, LEFT_TO_RIGHT,
                                 EXCLUSIVE, PREC, RAW)
        store_state(st + (c_lo * BH + i_bh) * K * V, term, K, V)
        tl.store(gsums + (c_lo * BH + i_bh) * K + tl.arange(0, K), gsum)
        return term
    if HAS_INIT:
        s = load_state(init, K, V)
    else:
        s = tl.zeros([K, V], dtype=tl.float32)
    for j in range(0, c_hi - c_lo):
        if LEFT_TO_RIGHT:
            i_c = c_lo + j
        else:
            i_c = c_hi - 1 - j
        if STORE:
            store_state(st + (i_c * BH + i_bh) * K * V, s, K, V)
        term, gsum = _chunk_term(x, y, g, sxt, sxd, syt, syd, sgt, sgd, T, i_c, ysc, ginv, K, V, C, LEFT_TO_RIGHT,
                                 EXCLUSIVE, PREC, RAW)
        s = s * tl.exp2(gsum)[:, None] + term
    return s


@triton.jit
def _chunk_term(x, y, g, sxt, sxd, syt, syd, sgt, sgd, T, i_c, ysc, ginv, K: tl.constexpr, V: tl.constexpr,
                C: tl.constexpr, LEFT_TO_RIGHT: tl.constexpr, EXCLUSIVE: tl.constexpr, PREC: tl.constexpr,
                RAW: tl.constexpr):
    """Chunk i_c's own part of the state leaving it in the walk's direction ([K, V], what a walk from zero
    would carry out of it), and the chunk's gate sum per key (log2 units: the state crossing it decays by
    exp2 of that)."""
    t0 = i_c * C
    xx = load_tile(x, t0, T, sxt, sxd, K, C)
    yy = load_tile(y, t0, T, syt, syd, V, C) * ysc
    gg = load_gate(g, t0, T, sgt, sgd, K, C, RAW, ginv)
    if LEFT_TO_RIGHT:  # decay from row t to the chunk's right edge
        w = tl.cumsum(gg, axis=0, reverse=True)
    else:  # decay from the chunk's left edge to row t
        w = tl.cumsum(gg, axis=0)
    if EXCLUSIVE:
        w -= gg
    return mm(tl.trans(xx * tl.exp2(w)), yy, PREC), tl.sum(gg, axis=0)


@triton.jit(do_not_specialize=["T", "H", "NT", "BH", "LC", "NS"])
def chunk_states_kernel(
    q, k, v, gf, gb, do, st, init, gsums,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
    T, H, NT, BH, LC, NS, dscale, ginv,
    K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, GRAD: tl.constexpr, HAS_INIT: tl.constexpr,
    PREC: tl.constexpr, RAW: tl.constexpr, LOCAL: tl.constexpr = False,
):
    """Grid (B*H, states, NS): with HAS_INIT each program walks one segment of LC chunks from the
    state entering it (init [states, NS, B*H, K, V], from the seq path's segment scan); else NS = 1
    and LC = NT. LOCAL (LC = 1, NS = NT): each program stores one chunk's own term and gate sums
    (gsums [states, NT, B*H, K]) for state_scan_kernel, which turns them into the entering states."""
    i_bh = tl.program_id(0).to(tl.int64)  # B*H on grid axis 0: axis 1 is capped at 65535
    i_st = tl.program_id(1)
    i_seg = tl.program_id(2)
    c_lo = i_seg * LC
    c_hi = tl.minimum(c_lo + LC, NT)
    init += ((i_st * NS + i_seg) * BH + i_bh) * K * V
    gsums += i_st * NT * BH * K
    b = i_bh // H
    h = i_bh % H
    q, k, v, gf, gb, do = at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, do, sdb,
                                  sdh)
    # one constexpr-specialised walk per state: no pointer of one dtype/stride class is merged with another
    if i_st == 0:
        _walk(k, v, gf, st, init, skt, skd, svt, svd, sft, sfd, T, c_lo, c_hi, BH, i_bh, 1.0, ginv,
              K, V, C, True, True, HAS_INIT, PREC, RAW, True, LOCAL, gsums)
    elif i_st == 1:
        _walk(k, v, gb, st + NT * BH * K * V, init, skt, skd, svt, svd, sgt, sgd, T, c_lo, c_hi, BH, i_bh,
              1.0, ginv, K, V, C, False, True, HAS_INIT, PREC, RAW, True, LOCAL, gsums)
    elif GRAD:
        if i_st == 2:
            _walk(q, do, gf, st + 2 * NT * BH * K * V, init, sqt, sqd, sdt, sdd, sft, sfd, T, c_lo, c_hi, BH,
                  i_bh, dscale, ginv, K, V, C, False, False, HAS_INIT, PREC, RAW, True, LOCAL, gsums)
        else:
            _walk(q, do, gb, st + 3 * NT * BH * K * V, init, sqt, sqd, sdt, sdd, sgt, sgd, T, c_lo, c_hi, BH,
                  i_bh, dscale, ginv, K, V, C, True, False, HAS_INIT, PREC, RAW, True, LOCAL, gsums)


@triton.jit
def _affine(a1, b1, a2, b2):
    """x -> a1 x + b1, then x -> a2 x + b2."""
    return a1 * a2, b1 * a2 + b2


@triton.jit(do_not_specialize=["NT", "BH"])
def state_scan_kernel(st, gsums, NT, BH, K: tl.constexpr, V: tl.constexpr, CB: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (B*H, states, K*V / BLOCK). In place over st [states, NT, B*H, K, V]: each chunk's own term
    (LOCAL chunk_states_kernel) becomes the state entering it. Along the walk's direction (states 0, 3 left
    to right, 1, 2 right to left) S_next = exp2(gsum) * S + term is an elementwise recurrence, so BLOCK state
    elements scan CB chunks at a time as one associative scan (no serial dot chain). A block's stores stay in
    its own CB slots, already loaded: the state leaving its last chunk is carried, not stored."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_st = tl.program_id(1)
    e = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    left_to_right = (i_st == 0) | (i_st == 3)
    st += i_st * NT * BH * K * V
    gsums += i_st * NT * BH * K
    rows = tl.arange(0, CB)
    carry = tl.zeros([BLOCK], dtype=tl.float32)
    for b in range(0, tl.cdiv(NT, CB)):
        r = b * CB + rows  # position along the walk
        ok = (r < NT)[:, None]
        slot = tl.where(left_to_right, r, NT - 1 - r).to(tl.int64) * BH + i_bh
        u = tl.load(st + slot[:, None] * (K * V) + e[None, :], mask=ok, other=0.0).to(tl.float32)
        d = tl.exp2(tl.load(gsums + slot[:, None] * K + (e // V)[None, :], mask=ok, other=0.0))
        a, p = tl.associative_scan((d, u), 0, _affine)
        p += a * carry[None, :]  # p[r]: the state leaving position r, entering r + 1
        nxt = tl.where(left_to_right, r + 1, NT - 2 - r).to(tl.int64) * BH + i_bh
        tl.store(st + nxt[:, None] * (K * V) + e[None, :], p.to(st.dtype.element_ty),
                 mask=((rows < CB - 1) & (r + 1 < NT))[:, None])
        first = tl.where(left_to_right, b * CB, NT - 1 - b * CB).to(tl.int64) * BH + i_bh
        tl.store(st + first * (K * V) + e, carry.to(st.dtype.element_ty))
        carry = tl.sum(tl.where((rows == CB - 1)[:, None], p, 0.0), axis=0)
