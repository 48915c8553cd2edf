"""RMSNorm keeps float64 inputs in float64 (and still widens half inputs to fp32).

A float64 model is the reference that the official code is checked against: its RMSNorms (block norms, g_norm,
l_norm, final norm) once ran through x.float(), which put ~1e-8 relative error into every block of an otherwise
float64 forward. Pinned against the hand formula y = x / sqrt(mean(x^2) + eps) * w in float64.
"""
import pytest
import timm
import torch

import vig.models  # noqa: F401
from vig.layers.norms import RMSNorm


def _by_hand(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def test_rmsnorm_float64_matches_the_formula_in_float64():
    gen = torch.Generator().manual_seed(0)
    norm = RMSNorm(64, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(64, generator=gen, dtype=torch.float64))
    x = torch.randn(8, 64, generator=gen, dtype=torch.float64)
    y = norm(x)
    assert y.dtype == torch.float64
    # fp32 arithmetic is ~1e-7 off here; float64 agrees to rounding
    torch.testing.assert_close(y, _by_hand(x, norm.weight.detach(), 1e-6), rtol=1e-13, atol=1e-13)


def test_rmsnorm_bf16_still_computes_in_fp32():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 64, generator=gen).to(torch.bfloat16)
    w = 1 + 0.3 * torch.randn(64, generator=gen)
    norm = RMSNorm(64)
    with torch.no_grad():
        norm.weight.copy_(w)
    y = norm(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, _by_hand(x.float(), w, 1e-6).to(torch.bfloat16))


@pytest.mark.parametrize("name,kwargs", [("vig_tiny", dict(depth=1)), ("vig_h_tiny", dict(depths=(1, 1, 1, 1)))])
@torch.no_grad()
def test_every_rmsnorm_of_a_float64_model_runs_in_float64(name, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).double().eval()
    seen = []

    def check(mod, inp, out):
        seen.append(mod)
        torch.testing.assert_close(out, _by_hand(inp[0], mod.weight, mod.eps), rtol=1e-12, atol=1e-12)

    hooks = [m.register_forward_hook(check) for m in model.modules() if isinstance(m, RMSNorm)]
    model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    for h in hooks:
        h.remove()
    assert len(seen) == len(hooks) > 0
