"""timm API forms that timm's own ViTs take: forward_intermediates(output_dict=True), and dynamic_img_size /
set_input_size on ViG-H (which takes any size, so they only record it)."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers the models)

SMALL = dict(vig_tiny=dict(depth=2, img_size=32), vig_h_tiny=dict(depths=(1, 1, 1, 1), dims=16,
                                                                   num_heads=(1, 1, 1, 1)))


def _model(name):
    torch.manual_seed(0)
    return timm.create_model(name, drop_path_rate=0.0, **SMALL[name]).eval()


@pytest.mark.parametrize("name", sorted(SMALL))
@torch.no_grad()
def test_output_dict_holds_the_tuple_forms_values(name):
    m = _model(name)
    x = torch.randn(1, 3, 32, 32)
    final, inter = m.forward_intermediates(x)
    out = m.forward_intermediates(x, output_dict=True)
    assert set(out) == {"image_intermediates", "image_features"}
    torch.testing.assert_close(out["image_features"], final, rtol=0, atol=0)
    assert len(out["image_intermediates"]) == len(inter)
    for a, b in zip(out["image_intermediates"], inter):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    only = m.forward_intermediates(x, output_dict=True, intermediates_only=True)
    assert set(only) == {"image_intermediates"}


def test_vig_takes_return_prefix_tokens_and_returns_no_prefix():
    m = _model("vig_tiny")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = m.forward_intermediates(x, return_prefix_tokens=True, output_dict=True)
    assert "image_intermediates_prefix" not in out  # no class token, as timm's ViTs with num_prefix_tokens=0


def test_vig_h_accepts_dynamic_img_size_and_set_input_size():
    m = timm.create_model("vig_h_tiny", dynamic_img_size=True, img_size=64, **SMALL["vig_h_tiny"]).eval()
    assert m.dynamic_img_size is True and m.img_size == 64
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.set_input_size(img_size=(96, 80))
    assert m.img_size == (96, 80)
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing is resampled
    with torch.no_grad():
        assert m(torch.randn(1, 3, 96, 80)).shape == (1, 1000)
