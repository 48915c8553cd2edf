"""README, "## Models": the mixer averages the two scans with /2; official eval uses /4, and "the factor passes
only through an RMSNorm eps". Scaling the op's output changes the logits only through the head RMSNorm's eps:
with that eps at 0 a /4 op gives the same logits, with the default eps 1e-6 nearly the same."""
import pytest
import timm
import torch

import vig.layers.bigla_attn as bigla_attn
import vig.layers.gla2d as gla2d
import vig.models  # noqa: F401

MODELS = [("vig_tiny", dict(depth=2)), ("vig_h_tiny", dict(depths=(1, 1, 1, 1)))]


def _logits_with_op_halved(model, x, monkeypatch):
    orig = bigla_attn.bigla

    def quarter(*args, **kwargs):  # /4 instead of the op's /2
        return orig(*args, **kwargs) / 2

    with monkeypatch.context() as mp:
        mp.setattr(bigla_attn, "bigla", quarter)
        mp.setattr(gla2d, "bigla", quarter)
        return model(x)


@pytest.mark.parametrize("name,kwargs", MODELS)
@torch.no_grad()
def test_the_scan_average_factor_passes_only_through_the_norm_eps(name, kwargs, monkeypatch):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    x = torch.randn(2, 3, 64, 64)
    mixers = [m for m in model.modules() if hasattr(m, "g_norm")]
    assert mixers
    ref = model(x)
    halved = _logits_with_op_halved(model, x, monkeypatch)
    assert not torch.equal(halved, ref)  # the patch reached the op
    rel = float((halved - ref).norm() / ref.norm())
    assert rel < 1e-3  # at random init; README quotes ~1e-6 for the released weights
    for m in mixers:
        m.g_norm.eps = 0.0
    ref0 = model(x)
    torch.testing.assert_close(_logits_with_op_halved(model, x, monkeypatch), ref0, rtol=1e-6, atol=1e-7)
