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

from vig.ops.bigla.triton._common import (_to_bf16, allow_next_grid, cumsum_rows_dot, load_gate, load_state,
                                          load_tile, logit_grad_scale, mm_bf16_rhs, mm_bf16_rounded, store_tile, switch,
                                          wait_for_prior_grid)
from vig.ops.bigla.triton._intra import (SPAN_MAX, chunk_span, diag_scores, direction_grads_exact,
                                         direction_grads_fast, direction_grads_fast_ref)


def _bwd_half_sum_ref_setting() -> bool:
    return switch("VIG_BIGLA_BWD_HALF_SUM_REF", "1")


# Read once, when the kernels are defined (an A/B knob for separate processes, like _fwd.HALF_SUM_REF). The
# default (1, since session 16) gives the fast intra-chunk path half the chunk's gate sum (`total`, computed for the
# cross terms anyway) as its factor reference; 0 restores the middle row. Each factor then stays within
# 2^(span / 2), and H200 fwd+bwd GPU time fell 3-6% (ViG-T 224 0.521 -> 0.506 ms, ViG-H-T stage 1 1.857 -> 1.746).
BWD_HALF_SUM_REF = tl.constexpr(_bwd_half_sum_ref_setting())


@triton.jit
def _store_rows(base, x, b, h, t0, T, H, W, D: tl.constexpr, C: tl.constexpr, PACKED: tl.constexpr):
    """x, rows t0.. of sequence b and head h, into a contiguous [B, T, H, D] gradient (the layout the kernel was timed
    with), or PACKED: into rows of W values per token (head-major slices of one [B, T, W] buffer, packed.py)."""
    if PACKED:
        store_tile(base + b * T * W + h * D, x, t0, T, W, 1, D, C)
    else:
        store_tile(base + (b * T * H + h) * D, x, t0, T, H * D, 1, D, C)


@triton.jit
def _in_chunk(qq, kk, g, x, total, dmat, EXACT, FORWARD: tl.constexpr, K: tl.constexpr, C: tl.constexpr,
              PREC: tl.constexpr, P_MODE: tl.constexpr):
    """One direction's pairs inside the chunk: their parts of dq and dk, and the scores P for dv (P_MODE 2: P's dot
    on bf16 operands, config.bwd_scores_mode)."""
    p_prec: tl.constexpr = "bf16" if P_MODE == 2 else ""
    if EXACT:
        iq, ik, p = direction_grads_exact(qq, kk, g, dmat, FORWARD, C, K)
        p += diag_scores(qq, kk, C) * 0.5
    else:
        if BWD_HALF_SUM_REF:
            iq, ik, p = direction_grads_fast_ref(qq, kk, x, total * 0.5, dmat, FORWARD, C, PREC, True, p_prec)
        else:
            iq, ik, p = direction_grads_fast(qq, kk, x, dmat, FORWARD, C, PREC, True, p_prec)
    return iq, ik, p


@triton.jit
def _direction(qq, kk, vv, dd, dscale, dmat, g, graw, sgt, sgd, ginv, st, stg, st_row, NTBH, dg, b, h, t0, T, H, WG,
               EXACT, acc_q, acc_k, acc_v, p_fwd, FORWARD: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
               C: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, BF16_OPS: tl.constexpr,
               DV_BF16: tl.constexpr, PACKED: tl.constexpr, PDL: tl.constexpr, P_MODE: tl.constexpr):
    """One direction's parts of dq, dk (diagonal excluded) and dv; stores its gate gradient (_store_rows; RAW: the
    gradient of the logits at graw, by the chain rule through logsigmoid(x) * ginv). vv, dd and the
    states are bf16 tiles under BF16_OPS (else fp32); dscale is applied after the dots with dd.
    DV_BF16 (with BF16_OPS): dv's two dots round their fp32 operand to bf16, one dot each instead of a
    hi + lo pair; dv feeds no gate gradient, so no cancelling sum sees that rounding.
    The forward direction runs first (acc_* and p_fwd None) and returns its dq, dk, dv and scores P; the backward
    direction takes them as acc_*, p_fwd: dv joins its sum as soon as the cross part exists,
    and dv's in-chunk part is one dot over both directions' P, triangles that share only the diagonal, where each
    holds q_t.k_t once (P_DIAG). Its row sums (x, the keys' decay exponents, the gate gradient's) are triangle dots
    (cumsum_rows_dot), so x and all that derives from it are born in the dots' layout, where tl.cumsum's results
    were converted through shared memory (4 tiles per direction). ptxas (triton 3.6, sm_90a, ViG-T's packed launch)
    against two sums, two P dots, a separate diagonal and tl.cumsum: 3,768 -> 3,160 SASS instructions, 149 -> 80
    barriers, 367 -> 164 shuffles, 132 -> 16 B of spills (benchmarks/NOTES_bigla.md, session 21)."""
    # x: decay from the chunk's left edge to row t (queries; w_k: key row s to the right edge), or backward: row t
    # to the right edge (w_k: the left edge to key row s)
    x = cumsum_rows_dot(g, C, not FORWARD)
    total = tl.sum(g, axis=0)
    # PDL: the first direction's in-chunk pairs, which read no state, run while the states walk may still run.
    # Not with gate logits: there ptxas spilled 12 B (none with the wait before them) and the op measured 1.2-1.5%
    # slower at ViG-T/S/B 224 (H100, session 52); with the wait first it measured 0.3-0.8% faster (session 53)
    if PDL and FORWARD and not RAW:
        iq, ik, p = _in_chunk(qq, kk, g, x, total, dmat, EXACT, FORWARD, K, C, PREC, P_MODE)
    if PDL and FORWARD:
        wait_for_prior_grid(PDL)
    # st: the key states S^f, S^b; stg: the do states dS^f, dS^b ([2, NT, BH, K, V] each)
    if FORWARD:
        s_ptr = st + st_row
        ds_ptr = stg + st_row
    else:
        s_ptr = st + NTBH * K * V + st_row
        ds_ptr = stg + NTBH * K * V + st_row
    if BF16_OPS:
        s_in = load_state(s_ptr, K, V, tl.bfloat16)
        ds_in = load_state(ds_ptr, K, V, tl.bfloat16)
    else:
        s_in = load_state(s_ptr, K, V)
        ds_in = load_state(ds_ptr, K, V)
    # total - x as its own sum of the other rows: hard resets make both terms large and their difference lossy
    w_k = tl.exp2(cumsum_rows_dot(g, C, FORWARD, True))
    kw = kk * w_k
    # pairs crossing the far edge, for the gate gradient: sum_v (S_out * dS_in) with S_out = S_in decayed
    # over the chunk + kw^T v; its second part is sum_t kw * (v dS_in^T), the dot dk needs anyway, so no
    # [K, V] S_out tile is ever formed (it held two state-sized tiles live next to S_in and dS_in)
    cross = tl.exp2(total) * tl.sum(s_in.to(tl.float32) * ds_in.to(tl.float32), axis=1)
    # pairs with one end outside the chunk
    dq = (tl.exp2(x) * dscale) * mm_bf16_rhs(dd, tl.trans(s_in), PREC, BF16_OPS)
    vds = mm_bf16_rhs(vv, tl.trans(ds_in), PREC, BF16_OPS)
    cross += tl.sum(kw * vds, axis=0)
    dk = w_k * vds
    if DV_BF16:
        dv = mm_bf16_rounded(kw, ds_in, BF16_OPS)
    else:
        dv = mm_bf16_rhs(kw, ds_in, PREC, BF16_OPS)
    if not FORWARD:
        dv += acc_v
    if not (PDL and FORWARD and not RAW):
        iq, ik, p = _in_chunk(qq, kk, g, x, total, dmat, EXACT, FORWARD, K, C, PREC, P_MODE)
    dq += iq
    dk += ik
    if not FORWARD:
        if P_MODE >= 1:  # p_fwd came scaled and rounded (_chunk_grads): its triangle is rounded once in all
            p = p * dscale + p_fwd.to(tl.float32)
            dscale = 1.0
        else:
            p += p_fwd
        if DV_BF16:
            dv += mm_bf16_rounded(tl.trans(p) * dscale, dd, BF16_OPS)
        else:
            dv += mm_bf16_rhs(tl.trans(p) * dscale, dd, PREC, BF16_OPS)
    # gate gradient: this chunk's rows plus the pairs crossing its far edge (module doc)
    d = qq * dq - kk * dk
    d = cumsum_rows_dot(d, C, FORWARD)
    d += cross[None, :]
    if RAW:  # the logits are re-read here rather than kept live through the whole program
        d *= logit_grad_scale(graw, t0, T, sgt, sgd, K, C, ginv)
    _store_rows(dg, d, b, h, t0, T, H, WG, K, C, PACKED)
    if not FORWARD:
        dq += acc_q
        dk += acc_k
    return dq, dk, dv, p


@triton.jit
def _chunk_grads(q, k, v, do, dq, dk, dv, dgf, dgb, st, stg, gf, gb, ga, gc, exact, b, h, t0, i_c, i_bh,
                 sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd, sft, sfd, sgt, sgd, sdb, sdt, sdh, sdd,
                 T, H, NT, BH, WQK, WV, WG, dscale, ginv, K: tl.constexpr, V: tl.constexpr, C: tl.constexpr,
                 PREC: tl.constexpr, RAW: tl.constexpr, BF16_OPS: tl.constexpr, DV_BF16: tl.constexpr,
                 PACKED: tl.constexpr, PDL: tl.constexpr, P_MODE: tl.constexpr):
    """Every gradient of one chunk (gate tiles ga, gc already loaded); exact: the strong-gate path, a runtime
    flag or a constexpr (then the other path is not compiled in). PDL: waits for the states walk (the launch
    before) only where the first state is read. P_MODE (config.bwd_scores_mode) >= 1: the forward direction's
    scores, scaled, wait for the backward direction as bf16, the value dv's dot rounds them to anyway (DV_BF16)."""
    qq = load_tile(q + b * sqb + h * sqh, t0, T, sqt, sqd, K, C)
    kk = load_tile(k + b * skb + h * skh, t0, T, skt, skd, K, C)
    if BF16_OPS:
        vv = load_tile(v + b * svb + h * svh, t0, T, svt, svd, V, C, tl.bfloat16)
        dd = load_tile(do + b * sdb + h * sdh, t0, T, sdt, sdd, V, C, tl.bfloat16)
    else:
        vv = load_tile(v + b * svb + h * svh, t0, T, svt, svd, V, C)
        dd = load_tile(do + b * sdb + h * sdh, t0, T, sdt, sdd, V, C)
    if BF16_OPS:  # dd stays do's bf16 values: dscale goes after the dots
        dsc = dscale
    else:
        dd = dd * dscale
        dsc = 1.0
    dmat = mm_bf16_rhs(dd, tl.trans(vv), PREC, BF16_OPS) * dsc
    st_row = (i_c * BH + i_bh) * K * V
    gq, gk, gv, p = _direction(qq, kk, vv, dd, dsc, dmat, ga, gf, sft, sfd, ginv, st, stg, st_row, NT * BH,
                               dgf, b, h, t0, T, H, WG, exact, None, None, None, None, True, K, V, C, PREC, RAW,
                               BF16_OPS, DV_BF16, PACKED, PDL, P_MODE)
    if P_MODE >= 1:
        p = _to_bf16(p * dsc)
    # the diagonal (decay 1 in both directions): each direction's P keeps q_t.k_t (P_DIAG), so dv's one in-chunk
    # dot takes P_tt = 2 q_t.k_t; D_tt = do_t.v_t is read off dmat (already in the dots' layout, where a [C, V]
    # product of the loaded tiles was not)
    gq, gk, gv, p = _direction(qq, kk, vv, dd, dsc, dmat, gc, gb, sgt, sgd, ginv, st, stg, st_row, NT * BH,
                               dgb, b, h, t0, T, H, WG, exact, gq, gk, gv, p, False, K, V, C,
                               PREC, RAW, BF16_OPS, DV_BF16, PACKED, False, P_MODE)
    idx = tl.arange(0, C)
    d_diag = 2.0 * tl.sum(tl.where(idx[:, None] == idx[None, :], dmat, 0.0), axis=1)[:, None]
    _store_rows(dq, gq + d_diag * kk, b, h, t0, T, H, WQK, K, C, PACKED)
    _store_rows(dk, gk + d_diag * qq, b, h, t0, T, H, WQK, K, C, PACKED)
    _store_rows(dv, gv, b, h, t0, T, H, WV, V, C, PACKED)


@triton.jit
def _one_chunk(q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, st, stg, flags, i_bh, i_c,
               sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
               sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
               T, H, NT, BH, WQK, WV, WG, dscale, ginv,
               K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
               BF16_OPS: tl.constexpr, DV_BF16: tl.constexpr, EXACT_MODE: tl.constexpr, PACKED: tl.constexpr,
               PDL: tl.constexpr, P_MODE: tl.constexpr):
    b = i_bh // H
    h = i_bh % H
    t0 = i_c * C
    gf += b * sfb + h * sfh
    gb += b * sgb + h * sgh
    ga = load_gate(gf, t0, T, sft, sfd, K, C, RAW, ginv)
    gc = load_gate(gb, t0, T, sgt, sgd, K, C, RAW, ginv)
    if EXACT_MODE == 1 and chunk_span(ga, gc) > SPAN_MAX:
        # listed for the exact launch: flags[0] counts (zeroed by the states walk), flags[1:] hold bh * NT + chunk
        wait_for_prior_grid(PDL)
        slot = tl.atomic_add(flags, 1)
        tl.store(flags + 1 + slot, (i_bh * NT + i_c).to(tl.int32))
    else:
        # a constant path in the split launches, so the other path is not compiled in; chosen per chunk in mode 0
        exact = True if EXACT_MODE == 2 else (False if EXACT_MODE == 1 else chunk_span(ga, gc) > SPAN_MAX)
        _chunk_grads(q, k, v, do, dq, dk, dv, dgf, dgb, st, stg, gf, gb, ga, gc, exact, b, h, t0, i_c, i_bh,
                     sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd, sft, sfd, sgt, sgd, sdb, sdt,
                     sdh, sdd, T, H, NT, BH, WQK, WV, WG, dscale, ginv, K, V, C, PREC, RAW, BF16_OPS, DV_BF16,
                     PACKED, PDL, P_MODE)


@triton.jit(do_not_specialize=["T", "H", "NT", "BH"])
def chunk_bwd_kernel(
    q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, st, stg, flags,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
    T, H, NT, BH, WQK, WV, WG, dscale, ginv,
    K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
    BF16_OPS: tl.constexpr, DV_BF16: tl.constexpr = False, EXACT_MODE: tl.constexpr = 0,
    PACKED: tl.constexpr = False, SPLIT_STATES: tl.constexpr = False, PDL: tl.constexpr = False,
    P_MODE: tl.constexpr = 0,
):
    """BF16_OPS (v, do and the states all bf16): the dots with v, do or a state as one operand take bf16
    operands (_common.mm_bf16_rhs), which keeps those tiles at half the registers.
    EXACT_MODE 0: grid (BH, NT), each chunk takes the fast or the exact intra-chunk path at run time (both compiled
    in); 1: grid (BH, NT), only chunks on the fast path, the others listed in flags (a zeroed int32 count, then
    their bh * NT + chunk); 2: a few programs that walk that list on the exact path. A launch of 1 then 2 covers
    every chunk once (the list, not a recomputed span, decides: two compiled kernels need not round a span at the
    threshold alike), the first kernel carries no exact-path code, and the second costs a few programs when
    nothing is listed (the usual case: a grid of every chunk took ~10k programs per call at ViG-T that only read
    their flag).
    PACKED: the gradients are rows of WQK (dq, dk), WV (dv) and WG (gates) values per token (_store_rows).
    st: the four states [4, NT, BH, K, V] of the states walk; SPLIT_STATES: st holds the key states the forward saved
    and stg the walk's two do states (config.save_key_states), else stg is unread.
    PDL (launched with launch_pdl, config.programmatic_launch): modes 0 and 1 start while the states walk runs and
    wait for it where they first read a state or the list's count; mode 2 starts during mode 1 and waits at once."""
    if not SPLIT_STATES:
        stg = st + 2 * NT * BH * K * V
    if EXACT_MODE == 2:
        wait_for_prior_grid(PDL)
        for i in range(tl.program_id(0), tl.load(flags), tl.num_programs(0)):
            idx = tl.load(flags + 1 + i).to(tl.int64)
            _one_chunk(q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, st, stg, flags, idx // NT, idx % NT,
                       sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
                       sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
                       T, H, NT, BH, WQK, WV, WG, dscale, ginv, K, V, C, PREC, RAW, BF16_OPS, DV_BF16, EXACT_MODE,
                       PACKED, False, P_MODE)
    else:
        allow_next_grid(PDL)
        _one_chunk(q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, st, stg, flags, tl.program_id(0).to(tl.int64),
                   tl.program_id(1).to(tl.int64),
                   sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
                   sfb, sft, sfh, sfd, sgb, sgt, sgh, sgd, sdb, sdt, sdh, sdd,
                   T, H, NT, BH, WQK, WV, WG, dscale, ginv, K, V, C, PREC, RAW, BF16_OPS, DV_BF16, EXACT_MODE,
                   PACKED, PDL, P_MODE)
