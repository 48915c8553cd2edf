"""The mixer's depthwise-conv weight keeps the strides its gradient arrives in, so DDP's bucket views match it
(bigla_attn.py). Checked on CPU, and on CUDA under bf16 autocast (the fused channels-last conv route)."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers the models)


def _dw_grads_match_their_weights(device, autocast):
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", depth=2, img_size=32).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        model(torch.randn(2, 3, 32, 32, device=device)).float().sum().backward()
    weights = [m.weight for n, m in model.named_modules() if n.endswith("attn.in_proj.0")]
    assert len(weights) == 2
    for w in weights:
        assert w.grad.stride() == w.stride(), (w.grad.stride(), w.stride())


def test_dw_weight_grads_arrive_in_the_weights_strides_on_cpu():
    _dw_grads_match_their_weights(torch.device("cpu"), autocast=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dw_weight_grads_arrive_in_the_weights_strides_cuda():
    _dw_grads_match_their_weights(torch.device("cuda"), autocast=True)
