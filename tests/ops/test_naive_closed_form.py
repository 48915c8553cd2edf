"""The naive oracle against an independent double loop over the closed form (float64)."""
import torch
import torch.nn.functional as F

from vig.ops.bigla import bigla


def closed_form(q, k, v, gf, gb, scale):
    T = q.shape[1]
    A = gf.cumsum(1)
    C = gb.flip(1).cumsum(1).flip(1)
    out = torch.zeros(*q.shape[:3], v.shape[-1], dtype=q.dtype)
    for t in range(T):
        for s in range(T):
            if s <= t:
                w = ((q[:, t] * scale * (A[:, t] - A[:, s]).exp()) * k[:, s]).sum(-1, keepdim=True)
                out[:, t] += w * v[:, s] / 2
            if s >= t:
                w = ((q[:, t] * scale * (C[:, t] - C[:, s]).exp()) * k[:, s]).sum(-1, keepdim=True)
                out[:, t] += w * v[:, s] / 2
    return out


def test_naive_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    B, T, H, K, V = 2, 9, 2, 4, 8
    q, k = torch.randn(2, B, T, H, K, dtype=torch.float64, generator=g)
    v = torch.randn(B, T, H, V, dtype=torch.float64, generator=g)
    gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, dtype=torch.float64, generator=g)) / 16
    o = bigla(q, k, v, gf, gb, backend="naive")
    ref = closed_form(q, k, v, gf, gb, K ** -0.5)
    assert o.dtype == torch.float64
    assert torch.allclose(o, ref, rtol=1e-12, atol=1e-12)
