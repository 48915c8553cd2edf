"""Chunked pure-PyTorch BiGLA: the CPU path and a readable second opinion to the Triton kernel.

Same math as naive.py (shared/design/bigla.md), regrouped into chunks of C tokens:
- inside a chunk, the forward (lower-triangular) and backward (upper-triangular) decay-weighted
  score matrices, both with the diagonal, are summed and multiplied by v once;
- between chunks, forward states run left->right and backward states right->left.

Numerics: every exp() takes a difference of cumulative log-decays arranged to be <= 0, measured
from a reference inside the same chunk or sub-chunk, so extreme gates underflow to 0 instead of
overflowing; and cumulative sums never span more than one chunk, so long sequences keep fp32
precision (a global cumsum at T=16k would reach |A| ~ 1e3 and lose ~1e-4 of relative accuracy).
Gradients come from autograd through these torch ops; there is no data-dependent control flow,
so torch.compile traces it without graph breaks.
"""
import math

import torch
import torch.nn.functional as F

SUB_CHUNK = 16  # pairwise [c, c, K] decays only inside 16-token sub-chunks: bounds the memory


def _to_chunks(x, acc, pad, n_chunks, chunk):
    """[B, T, H, D] (any strides) -> [B, H, N, C, D] in the accumulation dtype, zero-padded in T."""
    B, _, H, D = x.shape
    x = x.to(acc)
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
    return x.reshape(B, n_chunks, chunk, H, D).permute(0, 3, 1, 2, 4)


def _intra_scores(q, k, a, lower, sub):
    """Decay-weighted scores inside each chunk: [..., C, K] x2 -> [..., C, C].

    lower: P[i, j] = sum_k q_ik k_jk exp(a_ik - a_jk) for j < i (a = inclusive cumsum, non-increasing);
    upper: the same for j > i (a = reverse inclusive cumsum, non-decreasing). The diagonal is left 0.
    Off-diagonal sub-chunk blocks factor through a reference at the query sub-chunk's edge
    (both factors are exp(<= 0)); diagonal blocks use the pairwise [c, c, K] decays.
    """
    *lead, C, K = q.shape
    S = C // sub
    qs, ks, as_ = (x.reshape(*lead, S, sub, K) for x in (q, k, a))
    ref = as_[..., :, :1, :] if lower else as_[..., :, -1:, :]  # [..., S, 1, K]
    q_ref = qs * torch.exp(as_ - ref)
    pos_sub = torch.arange(C, device=q.device) // sub
    s_idx = torch.arange(S, device=q.device).unsqueeze(-1)
    key_mask = pos_sub < s_idx if lower else pos_sub > s_idx  # [S, C]: keys strictly before/after sub-chunk s
    expo = ref - a.unsqueeze(-3)  # [..., S, C, K]
    k_ref = k.unsqueeze(-3) * expo.masked_fill(~key_mask.unsqueeze(-1), float("-inf")).exp()
    off = torch.einsum("...sik,...sjk->...sij", q_ref, k_ref)  # [..., S, c, C]

    # Strict triangle: the diagonal (decay exactly 1) is added by the caller without exp, else its
    # gate gradients (+x and -x on the same a_i) cancel in fp32 and swamp tiny true gradients.
    tri = torch.ones(sub, sub, dtype=torch.bool, device=q.device)
    tri = tri.tril(-1) if lower else tri.triu(1)
    pair = (as_.unsqueeze(-2) - as_.unsqueeze(-3)).masked_fill(~tri.unsqueeze(-1), float("-inf")).exp()
    diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * pair).sum(-1)  # [..., S, c, c]
    eye = torch.eye(S, dtype=q.dtype, device=q.device)
    scores = off.reshape(*lead, S, sub, S, sub) + diag.unsqueeze(-2) * eye[:, None, :, None]
    return scores.reshape(*lead, C, C)


def _scan_states(local, decay, reverse):
    """Incoming state of every chunk. local, decay-applied-per-chunk: [B, H, N, K, V], [B, H, N, K]."""
    N = local.shape[2]
    order = range(N - 1, -1, -1) if reverse else range(N)
    state = torch.zeros_like(local[:, :, 0])
    states = [None] * N
    for n in order:
        states[n] = state
        state = state * decay[:, :, n].unsqueeze(-1) + local[:, :, n]
    return torch.stack(states, 2)


def bigla_chunk(q, k, v, g_fwd, g_bwd, scale, chunk_size=64):
    """Chunked BiGLA. q, k, g_*: [B, T, H, K]; v: [B, T, H, V]; returns [B, T, H, V] in q.dtype.

    Computes in float64 when q is float64, else float32. chunk_size: tokens per chunk (a multiple
    of 16 is fastest); short sequences use a smaller chunk automatically.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype = q.dtype
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    sub = math.gcd(int(chunk_size), SUB_CHUNK)
    C = min(int(chunk_size), -(-T // sub) * sub)
    N = -(-T // C)
    pad = N * C - T
    q, k, v, gf, gb = (_to_chunks(x, acc, pad, N, C) for x in (q, k, v, g_fwd, g_bwd))

    a_f = gf.cumsum(-2)  # A_t - A_{chunk start - 1}: non-increasing inside the chunk
    a_b = gb.flip(-2).cumsum(-2).flip(-2)  # C_t - C_{chunk end + 1}: non-decreasing
    scores = _intra_scores(q, k, a_f, True, sub) + _intra_scores(q, k, a_b, False, sub)
    scores = scores + torch.diag_embed(2 * (q * k).sum(-1))  # k_t v_t counted in both directions
    o = scores @ v

    if N > 1:
        tot_f, tot_b = a_f[..., -1, :], a_b[..., 0, :]  # whole-chunk log-decays, [B, H, N, K]
        loc_f = torch.einsum("bhnck,bhncv->bhnkv", k * torch.exp(tot_f.unsqueeze(-2) - a_f), v)
        loc_b = torch.einsum("bhnck,bhncv->bhnkv", k * torch.exp(tot_b.unsqueeze(-2) - a_b), v)
        in_f = _scan_states(loc_f, tot_f.exp(), reverse=False)
        in_b = _scan_states(loc_b, tot_b.exp(), reverse=True)
        q_dec = torch.cat([q * a_f.exp(), q * a_b.exp()], -1)  # [..., C, 2K]
        o = o + q_dec @ torch.cat([in_f, in_b], -2)  # [..., 2K, V]

    o = o * (scale / 2)
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype)
