"""The torch path's two in-chunk forms (chunk.py): factored dots for chunks whose summed gates stay within
FACTOR_SPAN_MAX (eager CPU), pairwise decays for the others and wherever values cannot be read (compile, export,
tracing, functorch, GPU). Each against the float64 naive oracle, fp32 tolerance 1e-5 relative RMSE, output and all
five gradients; and which chunks took which form."""
import pytest
import torch
import torch.nn.functional as F

from numerics import rel_rmse
from vig.ops.bigla import chunk
from vig.ops.bigla.naive import bigla_naive

C = 32  # bigla_chunk's default chunk


def _inputs(B, T, H, K, V, gates, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, B, T, H, K, generator=gen)
    v, do = torch.randn(2, B, T, H, V, generator=gen)
    gf, gb = gates((2, B, T, H, K), gen)
    return [q, k, v, gf, gb], do


def _out_and_grads(fn, inputs, do):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    o = fn(*leaves)
    return [o, *torch.autograd.grad(o, leaves, do)]


def _assert_matches_oracle(inputs, do, label):
    got = _out_and_grads(lambda *x: chunk.bigla_chunk(*x, 0.25), inputs, do)
    ref = _out_and_grads(lambda *x: bigla_naive(*x, 0.25), [x.double() for x in inputs], do.double())
    for name, a, b in zip(("o", "dq", "dk", "dv", "dg_fwd", "dg_bwd"), got, ref):
        assert rel_rmse(a, b) <= 1e-5, f"{label} {name}: rel RMSE {rel_rmse(a, b):.3e}"


def _vig_gates(shape, gen):
    return F.logsigmoid(torch.randn(shape, generator=gen)) / 16


def _spy_pairwise(monkeypatch):
    """Records how many chunks reach the pairwise form in each call."""
    seen = []
    pairwise = chunk._intra_scores

    def spy(q, *rest):
        seen.append(q.shape[:-2].numel())
        return pairwise(q, *rest)

    monkeypatch.setattr(chunk, "_intra_scores", spy)
    return seen


@pytest.mark.parametrize("form", ["factored", "pairwise"])
@pytest.mark.parametrize("T,K,V", [(17, 16, 32), (196, 32, 64), (203, 64, 64)])
def test_each_form_matches_the_oracle(form, T, K, V, monkeypatch):
    if form == "pairwise":
        monkeypatch.setattr(chunk, "_eager_cpu", lambda x: False)
    seen = _spy_pairwise(monkeypatch)
    inputs, do = _inputs(2, T, 2, K, V, _vig_gates)
    _assert_matches_oracle(inputs, do, form)
    assert bool(seen) == (form == "pairwise")


def test_only_strong_chunks_take_the_pairwise_form(monkeypatch):
    """One sequence's second chunk gets strong forward gates (span 32 x 5 = 160 > FACTOR_SPAN_MAX): that chunk alone
    goes pairwise, the other 2 x 2 x 4 - 1 chunks stay factored, and the mix matches the oracle."""
    seen = _spy_pairwise(monkeypatch)
    inputs, do = _inputs(2, 4 * C, 2, 16, 32, _vig_gates)
    inputs[3][1, C:2 * C, 0] = -5.0
    _assert_matches_oracle(inputs, do, "mixed")
    assert seen == [1]


@pytest.mark.parametrize("span", [59.5, 60.5])
def test_both_sides_of_the_span_limit(span, monkeypatch):
    """Constant gates put every chunk's span (its cumulative gates' range: C - 1 steps) just under / just over
    FACTOR_SPAN_MAX: under, the factors reach e^29.75 and must still give fp32 accuracy; over, the factored form's
    clamp would bend them, so they must not be used."""
    assert chunk.FACTOR_SPAN_MAX == 60.0
    seen = _spy_pairwise(monkeypatch)
    inputs, do = _inputs(1, 3 * C, 2, 16, 32, lambda s, g: torch.full(s, -span / (C - 1)))
    _assert_matches_oracle(inputs, do, f"span {span}")
    assert seen == ([] if span < 60 else [3 * 2])


def test_positive_gates_stay_exact(monkeypatch):
    """Gates > 0 are outside the contract but let through unchecked: the cumulative gates then rise and fall inside a
    chunk, so the factors' reference is the middle of their range, not half the chunk's total (+2.5 then -2.5 sums to
    0 but rises to 40: from a reference of 0 the clamp at e^30 would bend the factors)."""
    seen = _spy_pairwise(monkeypatch)
    sign = torch.where(torch.arange(C) < C // 2, 1.0, -1.0)[None, :, None, None]
    inputs, do = _inputs(1, C, 1, 16, 32, lambda s, g: (2.5 * sign).expand(s).clone())
    _assert_matches_oracle(inputs, do, "positive gates")
    assert seen == []


def test_fake_tensors_take_the_pairwise_form():
    """Shape-only runs (FakeTensorMode: memory and FLOP estimators, export's tracing) cannot read values."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        inputs = [mode.from_tensor(x) for x in _inputs(1, 40, 2, 16, 32, _vig_gates)[0]]
        assert chunk.bigla_chunk(*inputs, 0.25).shape == (1, 40, 2, 32)


def test_values_are_not_read_under_compile(monkeypatch):
    """torch.compile traces the pairwise form (no value-dependent branch, so no graph break)."""
    seen = _spy_pairwise(monkeypatch)
    inputs, _ = _inputs(1, 40, 2, 16, 32, _vig_gates)
    compiled = torch.compile(lambda *x: chunk.bigla_chunk(*x, 0.25), backend="eager", fullgraph=True)
    assert torch.allclose(compiled(*inputs), chunk.bigla_chunk(*inputs, 0.25), rtol=1e-5, atol=1e-6)
    assert seen  # traced through the pairwise form; the eager call after it added nothing
