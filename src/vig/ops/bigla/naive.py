"""The BiGLA oracle: a plain loop over time, exactly the contract's recurrence.

Slow on purpose: it is the documentation of the math and the test reference.
Autograd through the loop gives the reference gradients.
"""
import torch

from vig.ops.autocast import no_autocast


def bigla_naive(q, k, v, g_fwd, g_bwd, scale=None):
    """q, k: [B,T,H,K]; v: [B,T,H,V]; g_*: [B,T,H,K] log-decays. Returns [B,T,H,V] in q.dtype.

    Computes in float64 when q is float64, else float32 (autocast regions included).
    """
    with no_autocast(q.device):
        return _bigla_naive(q, k, v, g_fwd, g_bwd, scale)


def _bigla_naive(q, k, v, g_fwd, g_bwd, scale):
    B, T, H, K = q.shape
    if scale is None:
        scale = K ** -0.5
    out_dtype = q.dtype
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, gf, gb = (x.to(acc) for x in (q, k, v, g_fwd, g_bwd))
    # unbind once: indexing x[:, t] inside the loop makes every backward step scatter into a full-size zero tensor
    qs, ks, vs = (q * scale).unbind(1), k.unbind(1), v.unbind(1)
    gfs, gbs = gf.exp().unbind(1), gb.exp().unbind(1)
    state = q.new_zeros(B, H, K, v.shape[-1])
    out_f = []
    for t in range(T):
        state = state * gfs[t].unsqueeze(-1) + ks[t].unsqueeze(-1) * vs[t].unsqueeze(-2)
        out_f.append(torch.einsum("bhk,bhkv->bhv", qs[t], state))
    state = q.new_zeros(B, H, K, v.shape[-1])
    out_b = [None] * T
    for t in reversed(range(T)):
        state = state * gbs[t].unsqueeze(-1) + ks[t].unsqueeze(-1) * vs[t].unsqueeze(-2)
        out_b[t] = torch.einsum("bhk,bhkv->bhv", qs[t], state)
    o = (torch.stack(out_f, 1) + torch.stack(out_b, 1)) / 2
    return o.to(out_dtype)
