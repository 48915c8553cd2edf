"""Small layers: SwiGLU MLPs, Linear2d, the V2 stem geometry, pos_embed resampling, block residuals."""
import pytest
import torch
import torch.nn.functional as F

from vig.layers import (GatedMlp2d, GLABlock, Linear2d, SwiGLUMlp, V2PatchEmbed, VSSBlock, hier_stem,
                        resample_pos_embed, swiglu_hidden)



def test_swiglu_hidden_rounding():
    assert [swiglu_hidden(c, 256) for c in (192, 384, 768)] == [512, 1024, 2048]
    assert [swiglu_hidden(c, 32) for c in (96, 192, 384, 768)] == [256, 512, 1024, 2048]
    assert [swiglu_hidden(c, 32) for c in (128, 256, 512, 1024)] == [352, 704, 1376, 2752]


def test_swiglu_mlps_gate_first_half():
    torch.manual_seed(0)
    mlp = SwiGLUMlp(8, 16)
    x = torch.randn(3, 8)
    a, b = (x @ mlp.gate_proj.weight.T).split(16, -1)
    torch.testing.assert_close(mlp(x), (F.silu(a) * b) @ mlp.down_proj.weight.T)
    g = GatedMlp2d(8, 16)
    x2 = torch.randn(2, 8, 3, 4)
    h = torch.einsum("oc,bchw->bohw", g.fc1.weight, x2)
    ref = torch.einsum("oc,bchw->bohw", g.fc2.weight, F.silu(h[:, :16]) * h[:, 16:])
    torch.testing.assert_close(g(x2), ref)


def test_linear2d_is_a_linear_on_channels():
    torch.manual_seed(0)
    lin = Linear2d(6, 5)
    assert isinstance(lin, torch.nn.Linear) and lin.weight.shape == (5, 6)
    x = torch.randn(2, 6, 3, 4)
    torch.testing.assert_close(lin(x), F.linear(x.permute(0, 2, 3, 1), lin.weight, lin.bias).permute(0, 3, 1, 2))


@pytest.mark.parametrize("patch,img,grid", [(16, 224, 14), (16, 160, 10), (16, 100, 6), (16, 7, 1), (4, 28, 7)])
def test_v2_stem_geometry(patch, img, grid):
    pe = V2PatchEmbed((img, img), patch, 3, 32)
    out = pe(torch.randn(1, 3, img, img))
    assert out.shape == (1, 32, grid, grid) == (1, 32, *pe.feat_size((img, img)))
    if patch == 16:
        assert pe.proj[0].kernel_size == (9, 9) and pe.proj[0].stride == (8, 8)


def test_hier_stem_quarter_resolution():
    assert hier_stem(3, 16)(torch.randn(1, 3, 57, 64)).shape == (1, 16, 15, 16)


def test_resample_pos_embed_identity_and_grid():
    torch.manual_seed(0)
    pe = torch.randn(1, 16, 8)
    assert resample_pos_embed(pe, (4, 4)) is pe
    grid = pe.reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(6, 3), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(resample_pos_embed(pe, (6, 3)), ref)
    with pytest.raises(ValueError, match="square"):
        resample_pos_embed(torch.randn(1, 15, 8), (4, 4))


def test_blocks_are_residual_with_zeroed_branches():
    torch.manual_seed(0)
    blk, vss = GLABlock(64, 2), VSSBlock(64, 2)
    with torch.no_grad():
        blk.attn.o_proj.weight.zero_(); blk.mlp.down_proj.weight.zero_()
        vss.op.o_proj.weight.zero_(); vss.mlp.fc2.weight.zero_()
    x = torch.randn(1, 12, 64)
    torch.testing.assert_close(blk(x, (3, 4)), x)
    x2 = torch.randn(1, 64, 3, 4)
    torch.testing.assert_close(vss(x2), x2)


@pytest.mark.parametrize("patch, side", [(16, 224), (16, 230), (16, 231), (16, 236), (8, 28), (8, 30)])
def test_stem_unread_pixels_are_exactly_the_rows_no_output_sees(patch, side):
    from vig.layers.embed import V2PatchEmbed
    torch.manual_seed(0)
    embed = V2PatchEmbed((side, side), patch, in_chans=1, embed_dim=8).eval()
    n = embed.unread_pixels(side)
    x = torch.randn(1, 1, side, side, dtype=torch.float64)
    embed.double()
    base = embed(x)

    def changes(row):
        y = x.clone()
        y[..., row, :] += 1.0
        return not torch.equal(embed(y), base)
    assert changes(side - n - 1)
    assert n == 0 or not changes(side - n)
