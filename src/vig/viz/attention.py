"""Implicit attention of a BiGLA layer: the weights over keys that its recurrence amounts to.

BiGLA is linear attention with per-channel decays, so its output is a weighted sum of values:
    o_t = sum_s W[t, s] v_s,  W = (W^f + W^b) / 2
    W^f[t, s] = scale * <q_t * exp(A_t - A_s), k_s>  for s <= t,  A_t = sum_{r<=t} g_fwd[r]
    W^b[t, s] = scale * <q_t * exp(C_t - C_s), k_s>  for s >= t,  C_t = sum_{r>=t} g_bwd[r]
(see shared/design/bigla.md). The weights are not normalised and may be negative.
"""
import torch

# Elements of the [rows, T, D] exponent tensor built per chunk of queries: bounds peak memory
# (ViG-H stage 1 at 224 px has T = 3136, so all queries at once would need gigabytes).
_CHUNK_ELEMENTS = 1 << 23


def _direction_weights(q, k, cum, query_idx, causal, scale):
    """q, k, cum: [B, H, T, D]; query_idx: [Q] long. Returns [B, H, Q, T].

    The exponent cum_t - cum_s is formed directly and masked to -inf outside the allowed
    triangle before exp: on the allowed side it is <= 0 for gates <= 0, so nothing overflows
    (exp(+A) and exp(-A) are never formed separately)."""
    B, H, T, D = q.shape
    keys = torch.arange(T, device=q.device)
    out = []
    rows = max(1, _CHUNK_ELEMENTS // max(1, B * H * T * D))
    for start in range(0, query_idx.numel(), rows):
        idx = query_idx[start:start + rows]
        diff = cum[:, :, idx, None, :] - cum[:, :, None, :, :]  # [B, H, Q, T, D]
        allowed = keys[None, :] <= idx[:, None] if causal else keys[None, :] >= idx[:, None]
        diff = diff.masked_fill(~allowed[None, None, :, :, None], float("-inf"))
        w = torch.einsum("bhqd,bhqsd,bhsd->bhqs", q[:, :, idx], diff.exp(), k)
        out.append(w * scale)
    return torch.cat(out, dim=2)


def implicit_attention(q, k, g_fwd, g_bwd, scale=None, query=None):
    """Forward, backward and merged implicit attention of BiGLA.

    q, k, g_fwd, g_bwd: [B, T, H, D] as passed to `vig.ops.bigla.bigla` (g in log space).
    query: None for all query tokens, an int, or a sequence / 1-D tensor of token indices.
    Returns (w_fwd, w_bwd, w_merged), each [B, H, Q, T] (Q = number of queries), in float64
    when q is float64 else float32, such that `w_merged @ v` (v as [B, H, T, V]) is the op output.
    """
    if q.dim() != 4 or k.shape != q.shape or g_fwd.shape != q.shape or g_bwd.shape != q.shape:
        raise ValueError(
            "implicit_attention: q, k, g_fwd, g_bwd must all be [B, T, H, D] with one shape, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(g_fwd.shape)}, {tuple(g_bwd.shape)}")
    B, T, H, D = q.shape
    if scale is None:
        scale = D ** -0.5
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, gf, gb = (x.detach().to(acc).transpose(1, 2) for x in (q, k, g_fwd, g_bwd))  # [B, H, T, D]
    if query is None:
        query_idx = torch.arange(T, device=q.device)
    else:
        query_idx = torch.as_tensor(query, dtype=torch.long, device=q.device).reshape(-1)
        bad = query_idx[(query_idx < 0) | (query_idx >= T)]
        if bad.numel():
            raise ValueError(f"implicit_attention: query token {int(bad[0])} is outside 0..{T - 1}")
    a = gf.cumsum(dim=2)
    c = gb.flip(2).cumsum(dim=2).flip(2)
    w_fwd = _direction_weights(q, k, a, query_idx, True, scale)
    w_bwd = _direction_weights(q, k, c, query_idx, False, scale)
    return w_fwd, w_bwd, (w_fwd + w_bwd) / 2


def apply_attention(weights, v):
    """weights: [B, H, Q, T]; v: [B, T, H, V] (the op's layout). Returns [B, Q, H, V]."""
    return torch.einsum("bhqs,bshv->bqhv", weights, v.to(weights.dtype))
