"""Host side of the fused BiGLA kernels: buffers and launches (config.py: which path, chunk, precision and warps a
call takes, and the knobs).

No host synchronisation: every size is known from shapes. Launches per call: forward 1 (seq, T <= 256, walking
or block-pair), 2 (chunk), 3 (seq over segments, or chunk with a states walk in local segments) or 4 (chunk,
segments from the seq path's scan); backward 3 or 5 (chunk, unsplit or segmented walk, then its fast-path and
exact-path chunks as two launches), 1 or 4 (seq); VIG_BIGLA_SPLIT_EXACT=0 takes one off the chunk backward, fwd
adds one to the seq forward.
"""
import torch

from vig.ops.grid import cdiv
from vig.ops.bigla.triton._bwd import bigla_bwd_kernel, dg_fixup_kernel
from vig.ops.bigla.triton._chunk_bwd import chunk_bwd_kernel
from vig.ops.bigla.triton._chunk_fwd import chunk_fwd_kernel
from vig.ops.bigla.triton._chunk_states import chunk_states_kernel, states_fixup_kernel
from vig.ops.bigla.triton._fwd import bigla_fwd_kernel
from vig.ops.bigla.triton._fwd_tiles import bigla_fwd_tiles_kernel
from vig.ops.bigla.triton._states import seg_scan_kernel, seg_states_kernel
from vig.ops.bigla.triton.config import (_chunk_cfg, _interpreting, _seq_bwd_cfg, _sm_count, bf16_operands,
                                         bwd_scores_mode,
                                         check_supported, chunk_bwd_register_cap, chunk_bwd_warps,
                                         chunk_fwd_register_cap, chunk_size,
                                         dot_precision, dv_bf16, exact_list_programs, fwd_scratch_dtype, fwd_tile_rows,
                                         kernel_path, key_states_spec, light_walks, local_segments, pdl_launch_args,
                                         programmatic_launch,
                                         register_cap,
                                         save_key_states, segment_length, seq_bwd_stages, seq_fwd_launch,
                                         seq_precision, seq_warps, split_exact, state_dtype, walk_segment_chunks,
                                         walk_stages, walk_warps)


def _gate_args(gnorm) -> dict:
    """The kernels' gate arguments: RAW (the gates are logits) and ginv, the multiplier of their
    logsigmoid (unused for log-space gates)."""
    return {"ginv": 1.0 / gnorm if gnorm is not None else 1.0, "RAW": gnorm is not None}


def _strides(*xs):
    out = []
    for x in xs:
        out.extend(x.stride())
    return out


def _seg_states(q, k, v, gf, gb, do, L, NS, dscale, grad, prec, warps, gnorm):
    B, T, H, K = q.shape
    V = v.shape[-1]
    BH = B * H
    BT = chunk_size()
    st = torch.empty(4 if grad else 2, NS, BH, K, V, device=q.device, dtype=torch.float32)
    dec = torch.empty(2, NS, BH, K, device=q.device, dtype=torch.float32)
    dref = do if do is not None else v
    seg_states_kernel[(BH, NS)](
        q, k, v, gf, gb, dref, st, dec, *_strides(q, k, v, gf, gb, dref),
        T, H, L, NS, BH, dscale, K=K, V=V, BT=BT, GRAD=grad, PREC=prec, **_gate_args(gnorm),
        num_warps=warps)
    seg_scan_kernel[(BH, st.shape[0])](st, dec, NS, BH, K=K, V=V, num_warps=warps)
    return st


def _chunk_states(q, k, v, gf, gb, do, C, NT, dscale, prec, warps, gnorm, grad_only=False, count=None,
                  allow_next=False):
    """The chunk states [states, NT, B*H, K, V], and for a forward walked in local segments (local_segments)
    (segin, dec, LC, NS) for the chunk forward's SEGMENTS, else None (the backward's states come back
    finished). grad_only: the backward's two do states alone (the forward saved the key states; one segment);
    count (grad_only): an int32 tensor whose first value the walk zeroes (the chunk backward's exact-list count).
    allow_next (grad_only): the walk lets a programmatic launch after it start early (config.programmatic_launch)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BH = B * H
    grad = do is not None
    st_dtype = state_dtype(q.dtype)
    n_st = 2 if grad_only or not grad else 4
    st = torch.empty(n_st, NT, BH, K, V, device=q.device, dtype=st_dtype)
    dref = do if grad else v
    sm_count = _sm_count(q.device)
    LC = NT if grad_only else walk_segment_chunks(T, C, BH * n_st, sm_count, forward=not grad)
    NS = cdiv(NT, LC)
    local = NS > 1 and local_segments(forward=not grad)
    init = dec = fin = tot = st
    if count is not None:
        assert grad_only and count.dtype == torch.int32
        fin = count
    if local:
        dec = torch.empty(n_st, NT, BH, K, device=q.device, dtype=torch.float32)
        fin = torch.empty(n_st, NS, BH, K, V, device=q.device, dtype=torch.float32)
        tot = torch.empty(2, NS, BH, K, device=q.device, dtype=torch.float32)
    elif NS > 1:
        # the seq path's segment scan gives the state entering each segment, then they walk in parallel.
        # The scan keeps the seq path's default dots (3xtf32 in a half-precision backward: its chain of
        # segment states feeds the gate gradients) whatever the chunk path's dots or knobs.
        init = _seg_states(q, k, v, gf, gb, do, LC * C, NS, dscale, grad,
                           prec=seq_precision(q.dtype, grad), warps=seq_warps(K, V), gnorm=gnorm)
    warps = walk_warps(BH * n_st * NS, sm_count, warps, light=light_walks(K, V, grad, grad_only))
    chunk_states_kernel[(BH, n_st, NS)](
        q, k, v, gf, gb, dref, st, init, dec, fin, tot, *_strides(q, k, v, gf, gb, dref),
        T, H, NT, BH, LC, NS, dscale, K=K, V=V, C=C, GRAD=grad, HAS_INIT=NS > 1 and not local, PREC=prec,
        LOCAL=local, GRAD_ONLY=grad_only, CLEAR_COUNT=count is not None, ALLOW_NEXT=allow_next and grad_only,
        **_gate_args(gnorm), num_warps=warps,
        **register_cap("states"), **walk_stages())
    if not local:
        return st, None
    small_warps = 1 if _interpreting() else 4
    seg_scan_kernel[(BH, n_st)](fin, tot, NS, BH, K=K, V=V, num_warps=small_warps)
    if not grad:
        return st, (fin, dec, LC, NS)
    states_fixup_kernel[(BH, n_st, NT)](st, fin, dec, NT, BH, LC, NS, K=K, V=V, num_warps=small_warps)
    return st, None


def _chunk_fwd(q, k, v, gf, gb, scale, gnorm):
    B, T, H, K = q.shape
    K, V, C, prec, warps = _chunk_cfg(q, v, False)
    NT = cdiv(T, C)
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    st, seg = _chunk_states(q, k, v, gf, gb, None, C, NT, 1.0, prec, warps, gnorm)
    segin, dec, LC, NS = seg if seg is not None else (st, st, NT, 1)
    chunk_fwd_kernel[(B * H, NT)](
        q, k, v, gf, gb, o, st, segin, dec, *_strides(q, k, v, gf, gb, o),
        T, H, NT, B * H, LC, NS, float(scale), K=K, V=V, C=C, PREC=prec,
        SEGMENTS=seg is not None, **_gate_args(gnorm), num_warps=warps,
        **chunk_fwd_register_cap(K, V, prec))
    return o


def _grad_row_width(x, label: str) -> int:
    """Values per token of a gradient output [B, T, H, D]: a contiguous tensor or a head-major slice of a
    packed [B, T, W] buffer (the kernels write rows b * T * W + t * W + h * D)."""
    B, T, H, D = x.shape
    W = x.stride(1)
    if x.stride(3) != 1 or x.stride(2) != D or x.stride(0) != T * W:
        raise ValueError(f"bigla: gradient output {label} must be [B, T, H, D] rows of a [B, T, W] buffer, "
                         f"got strides {tuple(x.stride())}")
    return W


def _chunk_bwd(do, q, k, v, gf, gb, scale, gnorm, outs=None, key_states=None):
    B, T, H, K = q.shape
    K, V, C, prec, warps = _chunk_cfg(q, v, True)
    NT = cdiv(T, C)
    dscale = float(scale) * 0.5
    split_states = key_states is not None
    if split_states and key_states.shape[1] != NT:
        raise ValueError(f"bigla: the saved key states hold {key_states.shape[1]} chunks, but the backward's "
                         f"{C}-token chunks need {NT}: VIG_BIGLA_CHUNK_BWD or VIG_BIGLA_BT changed between the "
                         "forward and its backward")
    split = split_exact("bwd")
    # the exact-path chunks' list: a count, then their bh * NT + chunk (_chunk_bwd.chunk_bwd_kernel); a do-states
    # walk zeroes the count, else a memset does
    flags = None
    if split:
        alloc = torch.empty if split_states else torch.zeros
        flags = alloc(1 + B * H * NT, device=q.device, dtype=torch.int32)
    pdl = programmatic_launch(q.device, saved_keys=split_states)
    st, _ = _chunk_states(q, k, v, gf, gb, do, C, NT, dscale, prec, warps, gnorm, grad_only=split_states,
                          count=flags if split_states else None, allow_next=pdl)
    st_keys, st_grads = (key_states, st) if split_states else (st, st)
    contiguous = (H * K, H * V, H * K)  # row widths of fresh [B, T, H, D] gradients
    if outs is None:
        outs = [torch.empty(B, T, H, x.shape[-1], device=q.device, dtype=x.dtype) for x in (q, k, v, gf, gb)]
        wqk, wv, wg = contiguous
    else:
        wqk, wv, wg = (_grad_row_width(x, n) for x, n in ((outs[0], "dq"), (outs[2], "dv"), (outs[3], "dg_fwd")))
        if _grad_row_width(outs[1], "dk") != wqk or _grad_row_width(outs[4], "dg_bwd") != wg:
            raise ValueError("bigla: dq and dk (dg_fwd and dg_bwd) must share their row width")
    dq, dk, dv, dgf, dgb = outs
    bf16_ops = bf16_operands(prec, v, do, st, st_keys)
    flags = st if flags is None else flags
    grad_warps = chunk_bwd_warps(warps)
    round_dv = dv_bf16() and bool(bf16_ops)
    scores_mode = bwd_scores_mode(round_dv)
    for mode in (1, 2) if split else (0,):
        grid = (exact_list_programs(B * H * NT, _sm_count(q.device)),) if mode == 2 else (B * H, NT)
        chunk_bwd_kernel[grid](
            q, k, v, gf, gb, do, dq, dk, dv, dgf, dgb, st_keys, st_grads, flags, *_strides(q, k, v, gf, gb, do),
            T, H, NT, B * H, wqk, wv, wg, dscale, K=K, V=V, C=C, PREC=prec, **_gate_args(gnorm),
            BF16_OPS=bf16_ops, DV_BF16=round_dv, EXACT_MODE=mode, PACKED=(wqk, wv, wg) != contiguous,
            SPLIT_STATES=split_states, PDL=pdl, P_MODE=scores_mode, **pdl_launch_args(pdl),
            num_warps=grad_warps, **chunk_bwd_register_cap(prec))
    return dq, dk, dv, dgf, dgb


def bigla_fwd(q, k, v, gf, gb, scale, gnorm=None, save_keys=False):
    """gnorm: None for log-space gates; a gate_logit_normalizer n when gf, gb are logits x (decays
    logsigmoid(x) / n, computed in the kernels). save_keys (where save_key_states allows it): returns (o, the key
    states [2, NT, B*H, K, V]) for bigla_bwd's key_states."""
    check_supported(q, v)
    if save_keys and not save_key_states(q, v):
        raise ValueError("bigla: save_keys needs a shape that allows it and VIG_BIGLA_SAVE_KEY_STATES not 0 "
                         "(launch.save_key_states)")
    if kernel_path(q, v) == "chunk":
        return _chunk_fwd(q, k, v, gf, gb, scale, gnorm)
    B, T, H, K = q.shape
    V = v.shape[-1]
    BH = B * H
    prec = dot_precision(q.dtype)  # the chunk forward's choice: VIG_BIGLA_PREC applies to both paths
    tile = fwd_tile_rows(T, K, V)
    if tile:
        o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
        NB = cdiv(T, tile)
        launch = seq_fwd_launch(f"block{tile}", K, V, BH * NB, _sm_count(q.device), prec)
        bigla_fwd_tiles_kernel[(BH * NB,)](
            q, k, v, gf, gb, o, *_strides(q, k, v, gf, gb, o), T, H, NB, float(scale),
            K=K, V=V, BM=tile, PREC=prec, **_gate_args(gnorm), **launch)
        return o
    BT = chunk_size()
    L = segment_length(T, BH, q.device, BT)
    NS = cdiv(T, L)
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    ob = torch.empty(BH, T, V, device=q.device, dtype=fwd_scratch_dtype(q.dtype))
    init = _seg_states(q, k, v, gf, gb, None, L, NS, 1.0, False, prec, seq_warps(K, V), gnorm) if NS > 1 else ob
    split = split_exact("fwd")
    flags = torch.empty(BH, NS, device=q.device, dtype=torch.int32) if split else ob
    if save_keys:
        shape, dtype = key_states_spec(B, T, H, K, V, q.dtype)
        kst = torch.empty(shape, device=q.device, dtype=dtype)
    else:
        kst = ob
    # the walk's launch table was measured on whole sequences (one segment, no initial states)
    walk = None if NS > 1 else "walk"
    launch = seq_fwd_launch(walk, K, V, BH, _sm_count(q.device), prec)
    for mode in (1, 2) if split else (0,):
        bigla_fwd_kernel[(BH, NS)](
            q, k, v, gf, gb, o, ob, init, flags, kst, *_strides(q, k, v, gf, gb, o),
            T, H, L, NS, BH, float(scale), K=K, V=V, BT=BT, HAS_INIT=NS > 1, PREC=prec,
            **_gate_args(gnorm), EXACT_MODE=mode, SAVE_KEYS=save_keys, **launch)
    return (o, kst) if save_keys else o


def bigla_bwd(do, q, k, v, gf, gb, scale, gnorm=None, outs=None, key_states=None):
    """Gradients of q, k, v, gf, gb (of the logits when gnorm is set, see bigla_fwd). outs: five [B, T, H, D]
    tensors to write them into (slices of packed buffers allowed, see _grad_row_width), returned again.
    key_states: what bigla_fwd(save_keys=True) returned with o."""
    check_supported(q, v)
    if kernel_path(q, v, backward=True) == "chunk":
        return _chunk_bwd(do, q, k, v, gf, gb, scale, gnorm, outs, key_states)
    if outs is not None:  # the seq backward writes contiguous gradients only
        for out, grad in zip(outs, bigla_bwd(do, q, k, v, gf, gb, scale, gnorm)):
            out.copy_(grad)
        return tuple(outs)
    B, T, H, K = q.shape
    V = v.shape[-1]
    BH = B * H
    K, V, prec, warps = _seq_bwd_cfg(q, v)
    BT = chunk_size()
    L = segment_length(T, BH, q.device, BT)
    NS = cdiv(T, L)
    dscale = float(scale) * 0.5
    dq = torch.empty(B, T, H, K, device=q.device, dtype=q.dtype)
    dk = torch.empty(B, T, H, K, device=q.device, dtype=k.dtype)
    dv = torch.empty(B, T, H, V, device=q.device, dtype=v.dtype)
    # with logits the kernel's gate gradients stay fp32 until the chain rule below
    dgf = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32 if gnorm is not None else gf.dtype)
    dgb = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32 if gnorm is not None else gb.dtype)
    scr = torch.empty(BH, T, 2 * K + V, device=q.device, dtype=torch.float32)
    if NS > 1:
        init = _seg_states(q, k, v, gf, gb, do, L, NS, dscale, True, prec, warps, gnorm)
        tot = torch.empty(2, NS, BH, K, device=q.device, dtype=torch.float32)
        dgf_acc = dgf if dgf.dtype == torch.float32 else torch.empty_like(dgf, dtype=torch.float32)
        dgb_acc = dgb if dgb.dtype == torch.float32 else torch.empty_like(dgb, dtype=torch.float32)
    else:
        init = tot = scr
        dgf_acc, dgb_acc = dgf, dgb
    bigla_bwd_kernel[(BH, NS)](
        q, k, v, gf, gb, do, dq, dk, dv, dgf_acc, dgb_acc, scr, init, tot,
        *_strides(q, k, v, gf, gb, do),
        T, H, L, NS, BH, dscale, K=K, V=V, BT=BT, HAS_INIT=NS > 1, PREC=prec,
        **_gate_args(gnorm), num_warps=warps, num_stages=seq_bwd_stages(K, V, prec))
    if NS > 1:
        dg_fixup_kernel[(BH, NS)](dgf_acc, dgb_acc, dgf, dgb, tot, T, H, L, NS, BH, K=K, BT=BT,
                                  num_warps=4 if not _interpreting() else 1)
    if gnorm is not None:
        # the seq backward (only K*V > 64*64 by default) applies logsigmoid's chain rule here, not in its
        # kernels: their gate gradients are finished only after the segment fix-up
        dgf, dgb = ((dg * torch.sigmoid(-g.float()) / gnorm).to(g.dtype) for dg, g in ((dgf, gf), (dgb, gb)))
    return dq, dk, dv, dgf, dgb
