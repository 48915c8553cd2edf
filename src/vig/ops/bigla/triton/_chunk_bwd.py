"""Chunk-parallel path, step 2 of the backward: every gradient of one chunk, no sequential loop.

Inputs per chunk: q, k, v, do (times scale/2) and the four states entering it (_chunk_states.py):
S^f, S^b carry the keys of the other chunks, dS^f, dS^b the queries' do of the other chunks.

Gate gradients stay local. With dA_t = q_t dq^f_t - k_t dk^f_t (forward-direction parts of the
grads, diagonal left out: it cancels), d g_fwd[r] = sum_{t >= r} dA_t. Split at the chunk's right
edge c1: the rows of this chunk, plus sum_{t >= c1} dA_t, which counts exactly the pairs s < c1 <= t,
i.e. sum_v (S^f after this chunk * dS^f)[:, v]. Likewise d g_bwd[r] = sum_{t <= r} dC_t with the
pairs t < c0 <= s given by sum_v (S^b entering from c0 * dS^b). So no cumulative sum ever spans
more than one chunk: no cross-chunk pass, and no long fp32 sums of cancelling terms.
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import load_gate, load_state, load_tile, store_tile
from vig.ops.bigla.triton._intra import SPAN_MAX, chunk_span, grads_exact, grads_fast


@triton.jit(do_not_specialize=["T", "H", "NT", "BH"])
def chunk_bwd_kernel(
    q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, st,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
    T, H, NT, BH, dscale,
    K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    i_c = tl.program_id(1).to(tl.int64)
    b = i_bh // H
    h = i_bh % H
    t0 = i_c * C
    qq = load_tile(q + b * sqb + h * sqh, t0, T, sqt, sqd, K, C)
    kk = load_tile(k + b * skb + h * skh, t0, T, skt, skd, K, C)
    vv = load_tile(v + b * svb + h * svh, t0, T, svt, svd, V, C)
    dd = load_tile(do + b * sdb + h * sdh, t0, T, sdt, sdd, V, C) * dscale
    ga = load_gate(gf + b * sfb + h * sfh, t0, T, sft, sfd, K, C)
    gc = load_gate(gb + b * sgb + h * sgh, t0, T, sgt, sgd, K, C)
    a = tl.cumsum(ga, axis=0)
    c = tl.cumsum(gc, axis=0, reverse=True)
    a_last = tl.sum(ga, axis=0)
    c_first = tl.sum(gc, axis=0)
    w_kf = tl.exp2(a_last[None, :] - a)  # key row s -> the chunk's right edge, forward decay
    w_kb = tl.exp2(c_first[None, :] - c)  # the chunk's left edge -> key row s, backward decay

    KV = K * V
    st_row = (i_c * BH + i_bh) * KV
    s_f = load_state(st + st_row, K, V)
    s_b = load_state(st + NT * BH * KV + st_row, K, V)
    ds_f = load_state(st + 2 * NT * BH * KV + st_row, K, V)
    ds_b = load_state(st + 3 * NT * BH * KV + st_row, K, V)

    # pairs with one end outside the chunk
    dq_f = tl.exp2(a) * tl.dot(dd, tl.trans(s_f), input_precision=PREC)
    dq_b = tl.exp2(c) * tl.dot(dd, tl.trans(s_b), input_precision=PREC)
    dk_f = w_kf * tl.dot(vv, tl.trans(ds_f), input_precision=PREC)
    dk_b = w_kb * tl.dot(vv, tl.trans(ds_b), input_precision=PREC)
    dv_acc = tl.dot(kk * w_kf, ds_f, input_precision=PREC)
    dv_acc += tl.dot(kk * w_kb, ds_b, input_precision=PREC)

    # pairs inside the chunk
    dmat = tl.dot(dd, tl.trans(vv), input_precision=PREC)
    if chunk_span(ga, gc) > SPAN_MAX:
        iq_f, ik_f, iq_b, ik_b, p = grads_exact(qq, kk, ga, gc, dmat, C, K)
    else:
        iq_f, ik_f, iq_b, ik_b, p = grads_fast(qq, kk, a, c, dmat, C, PREC)
    dq_f += iq_f
    dk_f += ik_f
    dq_b += iq_b
    dk_b += ik_b
    dv_acc += tl.dot(tl.trans(p), dd, input_precision=PREC)
    d_diag = 2.0 * tl.sum(dd * vv, axis=1)[:, None]  # the diagonal, once per direction
    row = b * T * H + h  # gradients are contiguous [B, T, H, D]
    store_tile(dq + row * K, dq_f + dq_b + d_diag * kk, t0, T, H * K, 1, K, C)
    store_tile(dk + row * K, dk_f + dk_b + d_diag * qq, t0, T, H * K, 1, K, C)
    store_tile(dv + row * V, dv_acc, t0, T, H * V, 1, V, C)

    # gate gradients: this chunk's rows plus the pairs that cross its edge (see the module doc)
    s_f_out = s_f * tl.exp2(a_last)[:, None] + tl.dot(tl.trans(kk * w_kf), vv, input_precision=PREC)
    s_b_out = s_b * tl.exp2(c_first)[:, None] + tl.dot(tl.trans(kk * w_kb), vv, input_precision=PREC)
    cross_f = tl.sum(s_f_out * ds_f, axis=1)
    cross_b = tl.sum(s_b_out * ds_b, axis=1)
    d_a = qq * dq_f - kk * dk_f
    d_c = qq * dq_b - kk * dk_b
    store_tile(dgf + row * K, tl.cumsum(d_a, axis=0, reverse=True) + cross_f[None, :], t0, T, H * K, 1, K, C)
    store_tile(dgb + row * K, tl.cumsum(d_c, axis=0) + cross_b[None, :], t0, T, H * K, 1, K, C)
