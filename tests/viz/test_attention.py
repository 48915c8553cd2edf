"""Implicit attention of BiGLA: its weights applied to v must give the op's output."""
import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse

from vig.ops.bigla import bigla
from vig.viz.attention import apply_attention, implicit_attention


def _inputs(B, T, H, K, V, dtype=torch.float64, gate_scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, B, T, H, K, dtype=dtype, generator=g)
    v = torch.randn(B, T, H, V, dtype=dtype, generator=g)
    gf, gb = F.logsigmoid(gate_scale * torch.randn(2, B, T, H, K, dtype=dtype, generator=g))
    return q, k, v, gf, gb


@pytest.mark.parametrize("T", [1, 17, 37])
def test_merged_weights_reproduce_naive_float64(T):
    q, k, v, gf, gb = _inputs(2, T, 3, 8, 5)
    w_f, w_b, w_m = implicit_attention(q, k, gf, gb)
    assert w_m.shape == (2, 3, T, T) and w_m.dtype == torch.float64
    assert torch.allclose(w_m, (w_f + w_b) / 2)
    ref = bigla(q, k, v, gf, gb, backend="naive")
    assert rel_rmse(apply_attention(w_m, v), ref) < 1e-12
    # forward is causal (lower triangle), backward anti-causal, both hold the diagonal
    assert torch.all(w_f.triu(1) == 0) and torch.all(w_b.tril(-1) == 0)
    assert torch.allclose(w_f.diagonal(dim1=-2, dim2=-1), w_b.diagonal(dim1=-2, dim2=-1))


def test_merged_weights_reproduce_torch_backend_and_scale():
    q, k, v, gf, gb = _inputs(1, 65, 2, 16, 32, gate_scale=1.0, seed=1)
    _, _, w_m = implicit_attention(q, k, gf, gb, scale=0.3)
    ref = bigla(q, k, v, gf, gb, scale=0.3, backend="torch")
    assert rel_rmse(apply_attention(w_m, v), ref) < 1e-10


def test_single_query_is_a_row_of_all():
    q, k, v, gf, gb = _inputs(1, 23, 2, 4, 4)
    full = implicit_attention(q, k, gf, gb)
    for one, all_ in zip(implicit_attention(q, k, gf, gb, query=7), full):
        assert one.shape == (1, 2, 1, 23)
        assert torch.equal(one[:, :, 0], all_[:, :, 7])
    rows = implicit_attention(q, k, gf, gb, query=[22, 0])[2]
    assert torch.equal(rows[:, :, 0], full[2][:, :, 22]) and torch.equal(rows[:, :, 1], full[2][:, :, 0])


def test_extreme_gates_stay_finite_in_float32():
    q, k, v, _, _ = _inputs(1, 41, 1, 8, 8, dtype=torch.float32)
    strong = torch.full_like(q, -20.0)  # exp(+20 * 40) would overflow if formed
    w_f, w_b, w_m = implicit_attention(q, k, strong, strong)
    assert torch.isfinite(w_m).all()
    # with such decay only the diagonal survives in each direction
    assert torch.allclose(w_f, torch.diag_embed(w_f.diagonal(dim1=-2, dim2=-1)), atol=1e-7)
    ref = bigla(q, k, v, strong, strong, backend="naive")
    assert rel_rmse(apply_attention(w_m, v), ref) < 1e-5
    tiny = torch.full_like(q, -1e-4)  # decays ~1: close to plain (non-decayed) linear attention
    _, _, w_m = implicit_attention(q, k, tiny, tiny)
    assert rel_rmse(apply_attention(w_m, v), bigla(q, k, v, tiny, tiny, backend="naive")) < 1e-5


def test_bad_inputs_are_named():
    q, k, v, gf, gb = _inputs(1, 5, 1, 4, 4)
    with pytest.raises(ValueError, match="query token 5 is outside 0..4"):
        implicit_attention(q, k, gf, gb, query=5)
    with pytest.raises(ValueError, match="must all be"):
        implicit_attention(q, k[:, :4], gf, gb)
