"""Chunk-parallel path, step 2 of the forward: one program per (batch*head, chunk), no sequential loop.

o_t = scale/2 * [ sum over pairs inside the chunk (both directions, _intra.py)
                  + (q_t * exp(A_t - A_{c0-1})) S^f  +  (q_t * exp(C_t - C_{c1})) S^b ]
with S^f, S^b the states entering the chunk (_chunk_states.py). Both directions share one read of
q, k, v and one (P^f + P^b) v dot.
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import gate_sums, load_gate, load_state, load_tile, mm, store_tile
from vig.ops.bigla.triton._chunk_states import segment_share
from vig.ops.bigla.triton._intra import SPAN_MAX, chunk_span, scores_exact, scores_fast


@triton.jit(do_not_specialize=["T", "H", "NT", "BH", "LC", "NS"])
def chunk_fwd_kernel(
    q, k, v, gf, gb, o, st, segin, dec,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sob, sot, soh, sod,
    T, H, NT, BH, LC, NS, scale, ginv,
    K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr,
    RAW: tl.constexpr, SEGMENTS: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    i_c = tl.program_id(1).to(tl.int64)
    b = i_bh // H
    h = i_bh % H
    t0 = i_c * C
    qq = load_tile(q + b * sqb + h * sqh, t0, T, sqt, sqd, K, C)
    kk = load_tile(k + b * skb + h * skh, t0, T, skt, skd, K, C)
    vv = load_tile(v + b * svb + h * svh, t0, T, svt, svd, V, C)
    ga = load_gate(gf + b * sfb + h * sfh, t0, T, sft, sfd, K, C, RAW, ginv)
    gc = load_gate(gb + b * sgb + h * sgh, t0, T, sgt, sgd, K, C, RAW, ginv)
    a, c = gate_sums(ga, gc)
    if chunk_span(ga, gc) > SPAN_MAX:
        p = scores_exact(qq, kk, ga, gc, C)
    else:
        p = scores_fast(qq, kk, a, c, C, PREC)
    acc = mm(p, vv, PREC)
    s_f = load_state(st + (i_c * BH + i_bh) * K * V, K, V)
    s_b = load_state(st + ((NT + i_c) * BH + i_bh) * K * V, K, V)
    if SEGMENTS:  # st holds the part from inside the chunk's segment: add the decayed part from before it
        s_f += segment_share(segin, dec, 0, i_c, i_bh, NT, NS, BH, LC, K, V)
        s_b += segment_share(segin, dec, 1, i_c, i_bh, NT, NS, BH, LC, K, V)
    acc += mm(qq * tl.exp2(a), s_f, PREC)
    acc += mm(qq * tl.exp2(c), s_b, PREC)
    store_tile(o + b * sob + h * soh, acc * (scale * 0.5), t0, T, sot, sod, V, C)
