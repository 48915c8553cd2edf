"""The stem's conv as im2col + GEMM (the CUDA path of V2PatchEmbed) against nn.Conv2d, on CPU."""
import pytest
import torch
import torch.nn as nn

from vig.layers.embed import conv_as_gemm


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("k,s,size", [(9, 8, 64), (9, 8, 37), (3, 2, 20), (5, 4, 33)])
def test_matches_conv_fp32_with_grads(k, s, size):
    torch.manual_seed(k + size)
    conv = nn.Conv2d(3, 12, k, stride=s, padding=1).double()
    x = torch.randn(2, 3, size, size + 3, dtype=torch.float64)
    ref = conv(x)
    ref_g = torch.autograd.grad(ref.square().sum(), (conv.weight, conv.bias))
    out = conv_as_gemm(conv, x)
    g = torch.autograd.grad(out.square().sum(), (conv.weight, conv.bias))
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert _rel(out, ref) <= 1e-12
    for a, b in zip(g, ref_g):
        assert _rel(a, b) <= 1e-12


def test_autocast_bf16_within_tolerance():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 9, stride=8, padding=1)
    x = torch.randn(2, 3, 48, 48)
    ref = conv(x.double().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_as_gemm(conv, x)
    assert out.dtype == torch.bfloat16 and _rel(out, ref) <= 5e-3


def test_rejects_grouped_conv():
    with pytest.raises(ValueError, match="plain zero-padded"):
        conv_as_gemm(nn.Conv2d(4, 4, 3, groups=4), torch.randn(1, 4, 8, 8))
