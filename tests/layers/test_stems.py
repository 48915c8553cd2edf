"""The conv stems and ViG-H's downsample against hand-written float64 versions of the official layers (spec §1.1, §2.1):
V2 stem conv(k p/2+1, s p/2, p1) -> LN2d -> SiLU -> conv(k3 s2 p1) -> LN2d; ViG-H stem conv(k3 s2 p1) -> LN2d -> GELU
-> conv(k3 s2 p1) -> LN2d; downsample conv(k3 s2 p1) -> LN2d. LN2d: a LayerNorm over channels, eps 1e-5.

Norm weights and biases are randomised, so a swapped activation (SiLU for GELU) or a misplaced norm shows."""
import torch
import torch.nn.functional as F

from vig.layers import V2PatchEmbed, hier_stem
from vig.layers.embed import hier_downsample


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 0.2) + (1.0 if p.ndim == 1 else 0.0))


def ln2d(x, norm):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight.double(), norm.bias.double(),
                        1e-5).permute(0, 3, 1, 2)


def conv(x, c, stride, padding):
    return F.conv2d(x, c.weight.double(), c.bias.double() if c.bias is not None else None, stride, padding)


def test_v2_stem_matches_hand_written_float64():
    torch.manual_seed(0)
    stem = V2PatchEmbed((32, 48), patch_size=8, in_chans=3, embed_dim=16)  # k5 s4, then k3 s2
    _randomise(stem, 1)
    x = torch.randn(2, 3, 32, 48)
    p = stem.proj
    ref = conv(x.double(), p[0], 4, 1)
    ref = F.silu(ln2d(ref, p[1]))
    ref = ln2d(conv(ref, p[3], 2, 1), p[4])
    y = stem(x)
    assert y.shape == ref.shape == (2, 16, 4, 6)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4)


def test_vig_h_stem_and_downsample_match_hand_written_float64():
    torch.manual_seed(0)
    stem, down = hier_stem(3, 16), hier_downsample(16, 32)
    _randomise(stem, 2)
    _randomise(down, 3)
    x = torch.randn(2, 3, 20, 28)
    ref = F.gelu(ln2d(conv(x.double(), stem[0], 2, 1), stem[2]))  # exact (erf) GELU, as nn.GELU()
    ref = ln2d(conv(ref, stem[5], 2, 1), stem[7])
    y = stem(x)
    assert y.shape == ref.shape == (2, 16, 5, 7)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(down(y).double(), ln2d(conv(y.double(), down[1], 2, 1), down[3]), rtol=1e-4, atol=1e-4)
