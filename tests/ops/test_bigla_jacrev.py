"""README, "## The op": torch.func transforms include jacrev (grad and vmap are tested elsewhere). (fp64 inputs inside
autocast need no test of their own: autocast never casts float64; the fp32 case, where the backends' no_autocast
guard matters, is in test_bigla_autograd_modes.py.)"""
import pytest
import torch
import torch.nn.functional as F

from vig.ops.bigla import bigla


def _inputs(B=1, T=7, H=2, K=3, V=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, B, T, H, K, generator=g, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, generator=g, dtype=dtype))
    return q, k, v, gf, gb


@pytest.mark.parametrize("backend", ["torch", "naive", "auto"])
def test_jacrev_matches_the_autograd_jacobian(backend):
    q, k, v, gf, gb = _inputs()
    jac = torch.func.jacrev(lambda q_, gf_: bigla(q_, k, v, gf_, gb, backend=backend), argnums=(0, 1))(q, gf)
    ref = torch.autograd.functional.jacobian(lambda q_, gf_: bigla(q_, k, v, gf_, gb, backend="naive"), (q, gf))
    for a, b in zip(jac, ref):
        assert a.shape == b.shape == (*v.shape, *q.shape)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
