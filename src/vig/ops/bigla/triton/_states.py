"""Long-sequence path: chunk-parallel state passing between segments of L tokens.

seg_states_kernel: each (segment, batch*head) program sums its segment's local states
(zero initial state) and total log2-decays. seg_scan_kernel turns them, in place, into
the states entering each segment, one sequential loop over segments per (bh, state).
State index: 0 = S^f (left to right), 1 = S^b (right to left), and in the backward
2 = dS^f (right to left), 3 = dS^b (left to right). Buffers: st [4, NS, BH, K, V],
dec [2, NS, BH, K] (0: sum of g_fwd over the segment, 1: of g_bwd; log2 units).
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import at_head, load_chunk_gates, load_state, load_tile, mm, store_state


@triton.jit(do_not_specialize=["T", "H", "L", "NS", "BH"])
def seg_states_kernel(
    q, k, v, gf, gb, do, st, dec,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
    T, H, L, NS, BH, dscale, ginv,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, GRAD: tl.constexpr, PREC: tl.constexpr,
    RAW: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)  # B*H on grid axis 0: axis 1 is capped at 65535
    i_s = tl.program_id(1).to(tl.int64)
    b = i_bh // H
    h = i_bh % H
    q, k, v, gf, gb, do = at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, do, sdb,
                                  sdh)
    s0 = i_s * L
    s1 = tl.minimum(s0 + L, T)
    nc = tl.cdiv(s1 - s0, BT)
    h_f = tl.zeros([K, V], dtype=tl.float32)
    h_b = tl.zeros([K, V], dtype=tl.float32)
    h_df = tl.zeros([K, V], dtype=tl.float32)
    h_db = tl.zeros([K, V], dtype=tl.float32)
    sum_f = tl.zeros([K], dtype=tl.float32)
    sum_b = tl.zeros([K], dtype=tl.float32)
    for j in range(0, nc):
        t0 = s0 + j * BT
        kk = load_tile(k, t0, s1, skt, skd, K, BT)
        vv = load_tile(v, t0, s1, svt, svd, V, BT)
        ga, gc, a, c, a_last, c_first = load_chunk_gates(gf, gb, t0, s1, sft, sfd, sgt, sgd, K, BT, RAW, ginv)
        kf = kk * tl.exp2(a_last[None, :] - a)
        h_f = h_f * tl.exp2(a_last)[:, None] + mm(tl.trans(kf), vv, PREC)
        kb = kk * tl.exp2(c_first[None, :] - c)
        h_b += tl.exp2(sum_b)[:, None] * mm(tl.trans(kb), vv, PREC)
        if GRAD:
            qq = load_tile(q, t0, s1, sqt, sqd, K, BT)
            dd = load_tile(do, t0, s1, sdt, sdd, V, BT) * dscale
            qf = qq * tl.exp2(a)
            h_df += tl.exp2(sum_f)[:, None] * mm(tl.trans(qf), dd, PREC)
            qb = qq * tl.exp2(c)
            h_db = h_db * tl.exp2(c_first)[:, None] + mm(tl.trans(qb), dd, PREC)
        sum_f += a_last
        sum_b += c_first
    KV = K * V
    store_state(st + ((0 * NS + i_s) * BH + i_bh) * KV, h_f, K, V)
    store_state(st + ((1 * NS + i_s) * BH + i_bh) * KV, h_b, K, V)
    if GRAD:
        store_state(st + ((2 * NS + i_s) * BH + i_bh) * KV, h_df, K, V)
        store_state(st + ((3 * NS + i_s) * BH + i_bh) * KV, h_db, K, V)
    rk = tl.arange(0, K)
    tl.store(dec + (0 * NS + i_s) * BH * K + i_bh * K + rk, sum_f)
    tl.store(dec + (1 * NS + i_s) * BH * K + i_bh * K + rk, sum_b)


@triton.jit(do_not_specialize=["NS", "BH"])
def seg_scan_kernel(st, dec, NS, BH, K: tl.constexpr, V: tl.constexpr):
    i_bh = tl.program_id(0).to(tl.int64)
    i_st = tl.program_id(1)
    left_to_right = (i_st == 0) | (i_st == 3)
    i_dec = i_st % 2  # S^f and dS^f decay by g_fwd, S^b and dS^b by g_bwd
    rk = tl.arange(0, K)
    carry = tl.zeros([K, V], dtype=tl.float32)
    for j in range(0, NS):
        i = tl.where(left_to_right, j, NS - 1 - j).to(tl.int64)
        ptr = st + ((i_st * NS + i) * BH + i_bh) * K * V
        local = load_state(ptr, K, V)
        tl.debug_barrier()  # in place: every thread has read this segment's state before any write
        store_state(ptr, carry, K, V)
        d = tl.load(dec + (i_dec * NS + i) * BH * K + i_bh * K + rk)
        carry = carry * tl.exp2(d)[:, None] + local
