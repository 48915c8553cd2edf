"""The stem's conv as im2col + GEMM (the CUDA path of V2PatchEmbed) against nn.Conv2d, on CPU."""
import pytest
import torch
import torch.nn as nn
from numerics import rel_rmse

from vig.layers.embed import conv_as_gemm


# reductions of 3 * k * k columns: 243, 27 and 75 are zero-padded to a multiple of 8, 48 (k = 4) is not
@pytest.mark.parametrize("k,s,size,batch", [(9, 8, 64, 2), (9, 8, 37, 2), (3, 2, 20, 2), (5, 4, 33, 2),
                                            (4, 4, 22, 2), (9, 8, 32, 0)])
def test_matches_conv_fp64_with_grads(k, s, size, batch):
    torch.manual_seed(k + size)
    conv = nn.Conv2d(3, 12, k, stride=s, padding=1).double()
    x = torch.randn(batch, 3, size, size + 3, dtype=torch.float64, requires_grad=True)
    ref = conv(x)
    ref_g = torch.autograd.grad(ref.square().sum(), (x, conv.weight, conv.bias))
    out = conv_as_gemm(conv, x)
    g = torch.autograd.grad(out.square().sum(), (x, conv.weight, conv.bias))
    if batch == 0:
        assert out.shape == ref.shape
        return
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert rel_rmse(out, ref) <= 1e-12
    for a, b in zip(g, ref_g):
        assert rel_rmse(a, b) <= 1e-12


def test_autocast_bf16_within_tolerance():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 9, stride=8, padding=1)
    x = torch.randn(2, 3, 48, 48)
    ref = conv.double()(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_as_gemm(conv.float(), x)
    assert out.dtype == torch.bfloat16 and rel_rmse(out, ref) <= 5e-3


def test_rejects_convs_it_does_not_cover():
    for conv in (nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 4, 3, padding="same"),
                 nn.Conv2d(4, 4, 3, dilation=2), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")):
        with pytest.raises(ValueError, match="plain zero-padded"):
            conv_as_gemm(conv, torch.randn(1, 4, 8, 8))
