"""README: `torch.jit.trace` and `torch.export` work. The exported program keeps the BiGLA op as one call of its
registered custom op, so a runtime with the op loaded gets the fused kernel."""
import pytest
import timm
import torch

import vig  # noqa: F401  (registers the models)


@pytest.mark.parametrize("name", ("vig_tiny", "vig_h_tiny"))
def test_torch_export_matches_eager(name):
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count("vig.bigla.default") == len(model.blocks if hasattr(model, "blocks") else
                                                          [b for s in model.layers for b in s.blocks]), targets


@pytest.mark.parametrize("name", ("vig_tiny", "vig_h_tiny"))
def test_jit_trace_matches_eager(name):
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)
