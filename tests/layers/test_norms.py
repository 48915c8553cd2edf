"""RMSNorm and LayerNorm2d (CPU path) against float64 hand computations with the official eps values.

Inputs are scaled so that mean(x^2) (RMSNorm) or the channel variance (LayerNorm2d) is of the order of eps: there a
wrong eps moves the output by tens of percent, where unit-scale inputs would hide it below any tolerance."""
import torch

from vig.layers import LayerNorm2d, RMSNorm


def _affine(norm, seed):
    """Random weight (and bias), so that a dropped or misplaced affine term cannot hide behind ones / zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 1.0)


def test_rmsnorm_matches_float64_with_eps_1e_6():
    torch.manual_seed(0)
    norm = RMSNorm(32)
    assert norm.eps == 1e-6  # the official default
    _affine(norm, 1)
    x = torch.randn(4, 7, 32) * 1e-3  # mean(x^2) ~ 1e-6 = eps
    xd, w = x.double(), norm.weight.double()
    ref = xd / torch.sqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(norm(x).double(), ref, rtol=1e-5, atol=1e-7)


def test_rmsnorm_returns_the_input_dtype_computed_in_fp32():
    """bf16 in, bf16 out (the official numerics): the fp32 result rounded once, not a wider tensor."""
    torch.manual_seed(0)
    norm = RMSNorm(64)
    _affine(norm, 2)
    x = torch.randn(3, 5, 64).bfloat16()
    with torch.no_grad():
        y = norm(x)
    assert y.dtype == torch.bfloat16
    xd = x.double()
    ref = xd / torch.sqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight.detach().double()
    # one bf16 rounding of the exact value: relative error <= 2^-8 per element
    assert float(((y.double() - ref).abs() / ref.abs().clamp_min(1e-6)).max()) <= 2 ** -8


def test_layernorm2d_normalizes_channels_with_eps_1e_5():
    torch.manual_seed(0)
    norm = LayerNorm2d(16)
    assert norm.eps == 1e-5  # the official stems' value (nn.LayerNorm's default)
    _affine(norm, 3)
    x = torch.randn(2, 16, 5, 3) * 3e-3 + 0.5  # channel variance ~1e-5 = eps, on an offset the mean must remove
    xd = x.double()
    mean = xd.mean(1, keepdim=True)
    var = xd.var(1, unbiased=False, keepdim=True)
    ref = (xd - mean) / torch.sqrt(var + 1e-5) * norm.weight.double().view(1, -1, 1, 1) \
        + norm.bias.double().view(1, -1, 1, 1)
    y = norm(x)
    assert y.shape == x.shape
    # fp32 cancellation of the 0.5 offset bounds the accuracy near 1e-4 relative
    torch.testing.assert_close(y.double(), ref, rtol=1e-3, atol=1e-3)
