"""Backward kernel: the gradients of both directions from one program per segment.

Pass 1 walks right to left carrying the two states that flow that way, S^b and dS^f,
and writes only their inter-chunk terms (dq^b, dk^f, dv^f) to fp32 scratch [BH, T, 2K+V].
Pass 2 walks left to right carrying S^f and dS^b, recomputes every intra-chunk term
(_intra.py) from one read of q, k, v, do, adds the scratch terms and writes dq, dk, dv once.
Gate gradients use dA_t = q_t dq^f_t - k_t dk^f_t, whose sum over the whole sequence is
exactly 0 (every pair (t, s) enters once through q_t and once through k_s), so the
reverse cumsum d g_fwd[r] = sum_{t>=r} dA_t equals -sum_{t<r} dA_t: both gate gradients
become prefix sums and are produced in the same left-to-right pass. On the long path
each segment adds the prefix over earlier segments in dg_fixup_kernel.
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import at_head, load_chunk_gates, load_state, load_tile, store_tile
from vig.ops.bigla.triton._intra import SPAN_MAX, chunk_span, grads_exact, grads_fast


@triton.jit(do_not_specialize=["T", "H", "L", "NS", "BH"])
def bigla_bwd_kernel(
    q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, scr, init, tot,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
    T, H, L, NS, BH, dscale, ginv,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, HAS_INIT: tl.constexpr, PREC: tl.constexpr,
    RAW: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)  # B*H on grid axis 0: axis 1 is capped at 65535
    i_s = tl.program_id(1).to(tl.int64)
    b = i_bh // H
    h = i_bh % H
    q, k, v, gf, gb, do = at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, do, sdb,
                                  sdh)
    # outputs are contiguous [B, T, H, D]
    dq += (b * T * H + h) * K
    dk += (b * T * H + h) * K
    dv += (b * T * H + h) * V
    dgf += (b * T * H + h) * K
    dgb += (b * T * H + h) * K
    W = 2 * K + V
    scr += i_bh * T * W
    s0 = i_s * L
    s1 = tl.minimum(s0 + L, T)
    nc = tl.cdiv(s1 - s0, BT)
    KV = K * V

    if HAS_INIT:
        s_b = load_state(init + ((1 * NS + i_s) * BH + i_bh) * KV, K, V)
        ds_f = load_state(init + ((2 * NS + i_s) * BH + i_bh) * KV, K, V)
    else:
        s_b = tl.zeros([K, V], dtype=tl.float32)
        ds_f = tl.zeros([K, V], dtype=tl.float32)
    for j in range(0, nc):
        t0 = s0 + (nc - 1 - j) * BT
        qq = load_tile(q, t0, s1, sqt, sqd, K, BT)
        kk = load_tile(k, t0, s1, skt, skd, K, BT)
        vv = load_tile(v, t0, s1, svt, svd, V, BT)
        dd = load_tile(do, t0, s1, sdt, sdd, V, BT) * dscale
        ga, gc, a, c, a_last, c_first = load_chunk_gates(gf, gb, t0, s1, sft, sfd, sgt, sgd, K, BT, RAW, ginv)
        dq_b = tl.exp2(c) * tl.dot(dd, tl.trans(s_b), input_precision=PREC)
        kdf = tl.exp2(a_last[None, :] - a)
        dk_f = kdf * tl.dot(vv, tl.trans(ds_f), input_precision=PREC)
        dv_f = tl.dot(kk * kdf, ds_f, input_precision=PREC)
        store_tile(scr, dq_b, t0, s1, W, 1, K, BT)
        store_tile(scr + K, dk_f, t0, s1, W, 1, K, BT)
        store_tile(scr + 2 * K, dv_f, t0, s1, W, 1, V, BT)
        kdb = kk * tl.exp2(c_first[None, :] - c)
        s_b = s_b * tl.exp2(c_first)[:, None] + tl.dot(tl.trans(kdb), vv, input_precision=PREC)
        ds_f = ds_f * tl.exp2(a_last)[:, None] + tl.dot(tl.trans(qq * tl.exp2(a)), dd, input_precision=PREC)

    # pass 2 reads scratch rows that other threads of this program wrote in pass 1
    tl.debug_barrier()
    if HAS_INIT:
        s_f = load_state(init + ((0 * NS + i_s) * BH + i_bh) * KV, K, V)
        ds_b = load_state(init + ((3 * NS + i_s) * BH + i_bh) * KV, K, V)
    else:
        s_f = tl.zeros([K, V], dtype=tl.float32)
        ds_b = tl.zeros([K, V], dtype=tl.float32)
    run_a = tl.zeros([K], dtype=tl.float32)
    run_c = tl.zeros([K], dtype=tl.float32)
    for j in range(0, nc):
        t0 = s0 + j * BT
        qq = load_tile(q, t0, s1, sqt, sqd, K, BT)
        kk = load_tile(k, t0, s1, skt, skd, K, BT)
        vv = load_tile(v, t0, s1, svt, svd, V, BT)
        dd = load_tile(do, t0, s1, sdt, sdd, V, BT) * dscale
        ga, gc, a, c, a_last, c_first = load_chunk_gates(gf, gb, t0, s1, sft, sfd, sgt, sgd, K, BT, RAW, ginv)
        kdb = tl.exp2(c_first[None, :] - c)
        dq_f = tl.exp2(a) * tl.dot(dd, tl.trans(s_f), input_precision=PREC)
        dk_b = kdb * tl.dot(vv, tl.trans(ds_b), input_precision=PREC)
        dv_acc = tl.dot(kk * kdb, ds_b, input_precision=PREC)
        dv_acc += load_tile(scr + 2 * K, t0, s1, W, 1, V, BT)
        # intra-chunk terms of both directions
        dmat = tl.dot(dd, tl.trans(vv), input_precision=PREC)
        if chunk_span(ga, gc) > SPAN_MAX:
            iq_f, ik_f, iq_b, ik_b, p = grads_exact(qq, kk, ga, gc, dmat, BT, K)
        else:
            iq_f, ik_f, iq_b, ik_b, p = grads_fast(qq, kk, a, c, dmat, BT, PREC)
        dq_f += iq_f
        dk_f = ik_f + load_tile(scr + K, t0, s1, W, 1, K, BT)
        dq_b = iq_b + load_tile(scr, t0, s1, W, 1, K, BT)
        dk_b += ik_b
        dv_acc += tl.dot(tl.trans(p), dd, input_precision=PREC)
        d_diag = 2.0 * tl.sum(dd * vv, axis=1)[:, None]  # the diagonal, once per direction
        store_tile(dq, dq_f + dq_b + d_diag * kk, t0, s1, H * K, 1, K, BT)
        store_tile(dk, dk_f + dk_b + d_diag * qq, t0, s1, H * K, 1, K, BT)
        store_tile(dv, dv_acc, t0, s1, H * V, 1, V, BT)
        d_a = qq * dq_f - kk * dk_f
        d_c = qq * dq_b - kk * dk_b
        cs_a = tl.cumsum(d_a, axis=0)
        cs_c = tl.cumsum(d_c, axis=0)
        store_tile(dgf, -(run_a[None, :] + cs_a - d_a), t0, s1, H * K, 1, K, BT)
        store_tile(dgb, run_c[None, :] + cs_c, t0, s1, H * K, 1, K, BT)
        run_a += tl.sum(d_a, axis=0)
        run_c += tl.sum(d_c, axis=0)
        kdf = kk * tl.exp2(a_last[None, :] - a)
        s_f = s_f * tl.exp2(a_last)[:, None] + tl.dot(tl.trans(kdf), vv, input_precision=PREC)
        ds_b = ds_b * tl.exp2(c_first)[:, None] + tl.dot(tl.trans(qq * tl.exp2(c)), dd, input_precision=PREC)
    if HAS_INIT:  # tot: [2, NS, BH, K] segment sums of dA and dC for the fix-up
        rk = tl.arange(0, K)
        tl.store(tot + (0 * NS + i_s) * BH * K + i_bh * K + rk, run_a)
        tl.store(tot + (1 * NS + i_s) * BH * K + i_bh * K + rk, run_c)


@triton.jit(do_not_specialize=["T", "H", "L", "NS", "BH"])
def dg_fixup_kernel(dgf_in, dgb_in, dgf, dgb, tot, T, H, L, NS, BH, K: tl.constexpr, BT: tl.constexpr):
    """Long path: add the dA / dC sums of all earlier segments (all buffers contiguous [B,T,H,K])."""
    i_bh = tl.program_id(0).to(tl.int64)  # B*H on grid axis 0: axis 1 is capped at 65535
    i_s = tl.program_id(1).to(tl.int64)
    b = i_bh // H
    h = i_bh % H
    rk = tl.arange(0, K)
    off_a = tl.zeros([K], dtype=tl.float32)
    off_c = tl.zeros([K], dtype=tl.float32)
    for j in range(0, i_s):
        off_a += tl.load(tot + (0 * NS + j) * BH * K + i_bh * K + rk)
        off_c += tl.load(tot + (1 * NS + j) * BH * K + i_bh * K + rk)
    base = (b * T * H + h) * K
    s0 = i_s * L
    s1 = tl.minimum(s0 + L, T)
    for t0 in range(s0, s1, BT):
        x = load_tile(dgf_in + base, t0, s1, H * K, 1, K, BT)
        y = load_tile(dgb_in + base, t0, s1, H * K, 1, K, BT)
        tl.debug_barrier()  # in place when the gates are fp32: every read before any write
        store_tile(dgf + base, x - off_a[None, :], t0, s1, H * K, 1, K, BT)
        store_tile(dgb + base, y + off_c[None, :], t0, s1, H * K, 1, K, BT)
