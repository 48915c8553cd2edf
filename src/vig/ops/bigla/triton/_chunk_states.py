"""Chunk-parallel path, step 1: the states entering every chunk, one light sequential walk each.

Each program walks one (batch*head) sequence, or one segment of it, chunk by chunk for ONE state and
stores the state as it enters each chunk ([n_states, NT, BH, K, V]; fp32, or bf16 for half inputs, see
config.state_dtype); the heavy per-chunk work then runs
fully in parallel (_chunk_fwd.py, _chunk_bwd.py). A step is one [K, C] x [C, V] dot, so the
sequential part is short even at C = 64. A segmented walk starts each segment from the state entering it (the
seq path's segment scan gives them, the backward's default) or from zero (LOCAL, the forward's default: the chunk
forward, or states_fixup_kernel for the backward, adds the part from before the segment; config.local_segments).

State index (all referenced at the chunk edge they enter through, every decay exp2(<= 0)):
  0  S^f   = sum_{s < c0} exp(A_{c0-1} - A_s) k_s v_s^T        left to right, g_fwd
  1  S^b   = sum_{s >= c1} exp(C_{c1} - C_s) k_s v_s^T          right to left, g_bwd
  2  dS^f  = sum_{t >= c1} exp(A_t - A_{c1-1}) q_t do_t^T       right to left, g_fwd (backward only)
  3  dS^b  = sum_{t < c0} exp(C_t - C_{c0}) q_t do_t^T          left to right, g_bwd (backward only)
A = inclusive prefix sum of g_fwd, C = inclusive suffix sum of g_bwd, chunk = [c0, c1).
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import (advance_state, allow_next_grid, at_head, load_gate, load_state, load_tile,
                                          store_state)


@triton.jit
def _walk(x, y, g, st, init, sxt, sxd, syt, syd, sgt, sgd, T, c_lo, c_hi, BH, i_bh, ysc, ginv,
          K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, LEFT_TO_RIGHT: tl.constexpr,
          EXCLUSIVE: tl.constexpr, HAS_INIT: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, dec,
          STORE_DEC: tl.constexpr):
    """Walk chunks [c_lo, c_hi) starting from `init` (the state entering that span in the walk's
    direction) or zero. EXCLUSIVE: keys (k_s v_s enters the state undecayed by its own gate); else
    queries (q_t do_t is decayed by g_t too, because the pair (t, s) spans g_t). Writes the state entering each
    chunk to st; STORE_DEC: also the log2 decay from the span's entering edge to that chunk's ([K] at
    dec + (chunk * BH + i_bh) * K). Returns the state leaving the span (entering the chunk past it)
    and the span's total log2 decay. The in-chunk decay sums are 0/1-triangle dots (cumsum_rows_dot), born in the
    dots' layout. tl.cumsum's shuffles in the loads' layout gave the op 1.06-1.07x its fwd+bwd time (the forward
    1.11-1.13x) at 1024² / 2048², and equal times at 224² and ViG-H-T stage 1 (H100, sessions 25 and 28); that route
    was removed in session 28."""
    if HAS_INIT:
        s = load_state(init, K, V)
    else:
        s = tl.zeros([K, V], dtype=tl.float32)
    dsum = tl.zeros([K], dtype=tl.float32)
    for j in range(0, c_hi - c_lo):
        if LEFT_TO_RIGHT:
            i_c = c_lo + j
        else:
            i_c = c_hi - 1 - j
        store_state(st + (i_c * BH + i_bh) * K * V, s, K, V)
        if STORE_DEC:
            tl.store(dec + (i_c * BH + i_bh) * K + tl.arange(0, K), dsum)
        t0 = i_c * C
        xx = load_tile(x, t0, T, sxt, sxd, K, C)
        yy = load_tile(y, t0, T, syt, syd, V, C) * ysc
        gg = load_gate(g, t0, T, sgt, sgd, K, C, RAW, ginv)
        s, gsum = advance_state(s, xx, yy, gg, C, LEFT_TO_RIGHT, EXCLUSIVE, PREC)
        dsum += gsum
    return s, dsum


@triton.jit(do_not_specialize=["T", "H", "NT", "BH", "LC", "NS"])
def chunk_states_kernel(
    q, k, v, gf, gb, do, st, init, dec, fin, tot,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
    T, H, NT, BH, LC, NS, dscale, ginv,
    K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, GRAD: tl.constexpr, HAS_INIT: tl.constexpr,
    PREC: tl.constexpr, RAW: tl.constexpr, LOCAL: tl.constexpr, GRAD_ONLY: tl.constexpr = False,
    CLEAR_COUNT: tl.constexpr = False, ALLOW_NEXT: tl.constexpr = False,
):
    """Grid (B*H, states, NS): with NS > 1 each program walks one segment of LC chunks, either from the
    state entering it (HAS_INIT: init [states, NS, B*H, K, V], from the seq path's segment scan), or
    (LOCAL) from zero: then st holds each chunk's state from inside its segment only, dec [states, NT, B*H, K]
    the log2 decay from the segment's entering edge to the chunk's, and fin [states, NS, B*H, K, V] / tot
    [2, NS, B*H, K] the segment's own leaving state and total decay (by g_fwd, g_bwd), which seg_scan_kernel
    turns into the states entering the segments; the chunk forward (SEGMENTS) or states_fixup_kernel adds each
    chunk's decayed share. NS = 1: LC = NT. GRAD_ONLY (NS = 1 only): grid (B*H, 2, 1), the do states 2 and 3 alone
    into st [2, NT, B*H, K, V]; the forward saved the key states (config.save_key_states). CLEAR_COUNT (GRAD_ONLY,
    whose fin is otherwise unread): fin is the chunk backward's int32 exact-list count, zeroed here, the launch
    before the one that counts, so the backward needs no memset launch of its own. ALLOW_NEXT: the chunk backward
    launched after may start now (_chunk_bwd.chunk_bwd_kernel's PDL)."""
    allow_next_grid(ALLOW_NEXT)
    i_bh = tl.program_id(0).to(tl.int64)  # B*H on grid axis 0: axis 1 is capped at 65535
    i_st = tl.program_id(1)
    i_seg = tl.program_id(2)
    c_lo = i_seg * LC
    c_hi = tl.minimum(c_lo + LC, NT)
    init += ((i_st * NS + i_seg) * BH + i_bh) * K * V
    b = i_bh // H
    h = i_bh % H
    q, k, v, gf, gb, do = at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, do, sdb,
                                  sdh)
    st_i = st + i_st * NT * BH * K * V
    dec_i = dec + i_st * NT * BH * K
    if CLEAR_COUNT:
        if (i_bh == 0) & (i_st == 0):
            tl.store(fin, 0)
    if GRAD_ONLY:
        i_st += 2
    # one constexpr-specialised walk per state: no pointer of one dtype/stride class is merged with another
    if i_st == 0:
        s, d = _walk(k, v, gf, st_i, init, skt, skd, svt, svd, sft, sfd, T, c_lo, c_hi, BH, i_bh, 1.0, ginv,
                     K, V, C, True, True, HAS_INIT, PREC, RAW, dec_i, LOCAL)
        _store_segment(fin, tot, s, d, 0, i_seg, NS, BH, i_bh, K, V, LOCAL)
    elif i_st == 1:
        s, d = _walk(k, v, gb, st_i, init, skt, skd, svt, svd, sgt, sgd, T, c_lo, c_hi, BH, i_bh, 1.0, ginv,
                     K, V, C, False, True, HAS_INIT, PREC, RAW, dec_i, LOCAL)
        _store_segment(fin, tot, s, d, 1, i_seg, NS, BH, i_bh, K, V, LOCAL)
    elif GRAD:
        if i_st == 2:
            s, d = _walk(q, do, gf, st_i, init, sqt, sqd, sdt, sdd, sft, sfd, T, c_lo, c_hi, BH, i_bh, dscale,
                         ginv, K, V, C, False, False, HAS_INIT, PREC, RAW, dec_i, LOCAL)
            _store_segment(fin, tot, s, d, 2, i_seg, NS, BH, i_bh, K, V, LOCAL)
        else:
            s, d = _walk(q, do, gb, st_i, init, sqt, sqd, sdt, sdd, sgt, sgd, T, c_lo, c_hi, BH, i_bh, dscale,
                         ginv, K, V, C, True, False, HAS_INIT, PREC, RAW, dec_i, LOCAL)
            _store_segment(fin, tot, s, d, 3, i_seg, NS, BH, i_bh, K, V, LOCAL)


@triton.jit
def _store_segment(fin, tot, s, d, i_st: tl.constexpr, i_seg, NS, BH, i_bh, K: tl.constexpr, V: tl.constexpr,
                   LOCAL: tl.constexpr):
    """A LOCAL walk's leaving state, and (states 0, 1; 2 and 3 decay by the same gates over the same segment) its
    total decay, in seg_scan_kernel's layout."""
    if LOCAL:
        row = (i_st * NS + i_seg) * BH + i_bh
        store_state(fin + row * K * V, s, K, V)
        if i_st < 2:
            tl.store(tot + row * K + tl.arange(0, K), d)


@triton.jit
def segment_share(segin, dec, i_st, i_c, i_bh, NT, NS, BH, LC, K: tl.constexpr, V: tl.constexpr):
    """The part of state i_st entering chunk i_c from before the chunk's LOCAL segment: the state entering that
    segment (segin, seg_scan_kernel's) decayed to the chunk's edge (dec, the walk's)."""
    d = tl.load(dec + ((i_st * NT + i_c) * BH + i_bh) * K + tl.arange(0, K))
    return tl.exp2(d)[:, None] * load_state(segin + ((i_st * NS + i_c // LC) * BH + i_bh) * K * V, K, V)


@triton.jit(do_not_specialize=["NT", "BH", "LC", "NS"])
def states_fixup_kernel(st, segin, dec, NT, BH, LC, NS, K: tl.constexpr, V: tl.constexpr):
    """Grid (B*H, states, NT): a chunk state walked in a LOCAL segment gets its segment_share, in place: for
    kernels that read finished states."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_st = tl.program_id(1)
    i_c = tl.program_id(2)
    ptr = st + ((i_st * NT + i_c) * BH + i_bh) * K * V
    share = segment_share(segin, dec, i_st, i_c, i_bh, NT, NS, BH, LC, K, V)
    store_state(ptr, load_state(ptr, K, V) + share, K, V)
