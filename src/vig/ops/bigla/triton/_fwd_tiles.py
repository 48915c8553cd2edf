"""Forward for short sequences as dots between blocks of BM tokens: no state is carried, so nothing is serial.

One program owns one query block i of one (batch, head) and loops over the key blocks j:
- j < i (forward direction only): the decay between key s and query t, the gate sum over (s, t], splits into
  the query's share inside block i (a_t, from the block's start), the blocks strictly between (mid), and the
  key's share inside block j (a_last_j - a_s). Each part is <= 0, so q_t 2^a_t and k_s 2^(mid + a_last_j - a_s)
  are both at most 1 and their dot is the decayed score: no exponent can overflow, and one that underflows
  belongs to a weight below 2^-126.
- j > i: the backward direction, the same with the reversed sums c.
- j == i: both directions inside the block, through _intra.py's fast or exact path (SPAN_MAX), with the
  diagonal counted twice as the contract says.
Cost grows with T^2 / BM, against the walk's serial 2 T / BT chunk steps: used for T <= SHORT_T only.
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import _to_bf16, at_head, load_gate, load_tile, mm, store_tile
from vig.ops.bigla.triton._fwd import _chunk_tiles, _scores


@triton.jit
def _operand(x, PREC: tl.constexpr):
    """x as mm will round it: tiles kept across the key loop take half the registers under bf16 dots."""
    if PREC == "bf16":
        return _to_bf16(x)
    else:
        return x


@triton.jit
def _value_tile(v, t0, T, svt, svd, V: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr):
    """A v tile, which only feeds dots: under bf16 dots read as stored (bf16 needs no rounding), else fp32."""
    if PREC == "bf16":
        return load_tile(v, t0, T, svt, svd, V, BM, v.dtype.element_ty)
    else:
        return load_tile(v, t0, T, svt, svd, V, BM)


@triton.jit
def _key_block(k, v, g, j0, T, skt, skd, svt, svd, sgt, sgd, ginv, mid, K: tl.constexpr, V: tl.constexpr,
               BM: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, REVERSE: tl.constexpr):
    """The key block at j0, seen from a query block `mid` (the gate sums of the blocks between) away: its keys
    times 2^(mid + the key's share of its own block), its v tile and its gate sum. REVERSE: the backward
    direction (the query block lies to the left; the shares run from the block's left edge)."""
    kj = load_tile(k, j0, T, skt, skd, K, BM)
    vj = _value_tile(v, j0, T, svt, svd, V, BM, PREC)
    gj = load_gate(g, j0, T, sgt, sgd, K, BM, RAW, ginv)
    x = tl.cumsum(gj, axis=0, reverse=REVERSE)
    total = tl.sum(gj, axis=0)
    return kj * tl.exp2((mid + total)[None, :] - x), vj, total


@triton.jit(do_not_specialize=["T", "H", "NB"])
def bigla_fwd_tiles_kernel(
    q, k, v, gf, gb, o,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sob, sot, soh, sod,
    T, H, NB, scale, ginv,
    K: tl.constexpr, V: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
):
    # the NB query blocks of one head are adjacent programs, so their reads of its keys meet in L2
    pid = tl.program_id(0).to(tl.int64)
    i_bh = pid // NB
    i = pid % NB
    b = i_bh // H
    h = i_bh % H
    q, k, v, gf, gb, o = at_head(b, h, q, sqb, sqh, k, skb, skh, v, svb, svh, gf, sfb, sfh, gb, sgb, sgh, o, sob, soh)
    t0 = i * BM
    qq, kk, vv, ga, gc, a, c, a_last, c_first = _chunk_tiles(q, k, v, gf, gb, t0, T, sqt, sqd, skt, skd, svt, svd,
                                                             sft, sfd, sgt, sgd, ginv, K, V, BM, RAW)
    p, exact = _scores(qq, kk, ga, gc, a, c, a_last, c_first, t0 < 0, BM, PREC, False)
    acc = mm(p, vv, PREC)
    q_f = _operand(qq * tl.exp2(a), PREC)
    q_b = _operand(qq * tl.exp2(c), PREC)

    mid = tl.zeros([K], dtype=tl.float32)
    for n in range(0, i):
        k_f, vj, total = _key_block(k, v, gf, (i - 1 - n) * BM, T, skt, skd, svt, svd, sft, sfd, ginv, mid, K, V,
                                    BM, PREC, RAW, False)
        acc += mm(mm(q_f, tl.trans(k_f), PREC), vj, PREC)
        mid += total

    mid = tl.zeros([K], dtype=tl.float32)
    for j in range(i + 1, NB):
        k_b, vj, total = _key_block(k, v, gb, j * BM, T, skt, skd, svt, svd, sgt, sgd, ginv, mid, K, V, BM, PREC,
                                    RAW, True)
        acc += mm(mm(q_b, tl.trans(k_b), PREC), vj, PREC)
        mid += total
    store_tile(o, acc * (scale * 0.5), t0, T, sot, sod, V, BM)
