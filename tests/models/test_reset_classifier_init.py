"""reset_classifier (timm's API for a new head) starts the head as create_model(num_classes=...) does: the official
init, weight N(0, 0.02) and bias 0, in the model's dtype; a bare nn.Linear would have std 1/sqrt(3 * in_features)
(0.042 at ViG-T's 192 features) and a uniform bias."""
import pytest
import timm
import torch
import torch.nn as nn

import vig.models  # noqa: F401  (registers the models)


@pytest.mark.parametrize("name,kwargs", [("vig_tiny", dict(depth=1)), ("vig_h_tiny", dict(depths=(1, 1, 1, 1)))])
def test_reset_head_has_the_official_init(name, kwargs):
    torch.manual_seed(0)
    built = timm.create_model(name, num_classes=300, **kwargs).get_classifier()
    model = timm.create_model(name, **kwargs).double()
    model.reset_classifier(300)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.weight.dtype == torch.float64 and head.out_features == 300
    # 300 x in_features >= 57,600 draws: the sample std is within ~1% of the true one
    for w in (head.weight, built.weight):
        assert abs(float(w.std()) - 0.02) < 0.001, float(w.std())
    assert torch.equal(head.bias, torch.zeros_like(head.bias))
    assert model(torch.randn(2, 3, 64, 64, dtype=torch.float64)).shape == (2, 300)


def test_reset_to_zero_classes_is_identity():
    model = timm.create_model("vig_tiny", depth=1)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.num_features)
