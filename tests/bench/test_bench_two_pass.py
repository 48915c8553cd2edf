"""The direct two-pass baseline of the ablation computes the same function as the fused op."""
import torch
import torch.nn.functional as F
from numerics import rel_rmse

from vig.bench import two_pass
from vig.ops.bigla import bigla, bigla_naive


def _inputs(T, B=2, H=2, K=8, V=16):
    g = torch.Generator().manual_seed(T)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    gf, gb = (F.logsigmoid(torch.randn(B, T, H, K, generator=g, dtype=torch.float64)) for _ in range(2))
    return q, k, v, gf, gb


def test_causal_chunk_matches_a_loop():
    q, k, v, g, _ = _inputs(70)
    o = two_pass.causal_gla_chunk(q, k, v, g, 0.5)
    S = torch.zeros(2, 2, 8, 16, dtype=torch.float64)
    ref = []
    for t in range(70):
        S = g[:, t].exp().unsqueeze(-1) * S + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        ref.append(0.5 * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    assert rel_rmse(o, torch.stack(ref, 1)) < 1e-12


def test_two_pass_matches_naive_for_short_and_chunked_lengths():
    for T in (1, 17, 150):
        xs = _inputs(T)
        assert rel_rmse(two_pass.bigla_two_pass(*xs), bigla_naive(*xs, 8 ** -0.5)) < 1e-12


def test_patched_bigla_swaps_the_call_site_and_restores_it():
    import vig.layers.bigla_attn as site
    calls = []

    def spy(*a, **kw):
        calls.append(1)
        return bigla(*a, **kw)
    from vig.ops.bigla.packed import bigla_packed
    import vig.layers.gla2d as h_site
    with two_pass.patched_bigla(spy) as names:
        assert {"vig.layers.bigla_attn", "vig.layers.gla2d"} <= set(names) and h_site.bigla is spy
        xs = [torch.randn(1, 5, 2, 8, dtype=torch.float64) for _ in range(3)]
        g = -torch.rand(1, 5, 2 * 16, dtype=torch.float64)
        site.bigla_packed(torch.cat([x.flatten(2) for x in xs], -1), g, 2, 8)  # the ViG mixer's call
        assert calls == [1]
    assert site.bigla_packed is bigla_packed and h_site.bigla is bigla
