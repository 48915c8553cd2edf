"""Any input resolution: plain ViG resizes pos_embed (bicubic, fp32, align_corners=False) to the token
grid of every input; `img_size` sets the stored grid; ViG-H has no position embedding at all.

One-block / one-block-per-stage models keep this cheap: the resolution logic lives in the stem,
the position embedding and the token-grid bookkeeping, not in the depth.
"""
import pytest
import timm
import torch
import torch.nn.functional as F

import vig.models  # noqa: F401



SIZES = [(160, 160), (224, 224), (256, 256), (224, 320)]


def plain(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("vig_tiny", depth=1, **kwargs).eval()


@pytest.fixture(scope="module")
def vig1():
    return plain()


@pytest.fixture(scope="module")
def vig_h1():
    torch.manual_seed(0)
    return timm.create_model("vig_h_tiny", depths=(1, 1, 1, 1)).eval()


@pytest.mark.parametrize("hw", SIZES)
@torch.no_grad()
def test_plain_vig_any_resolution(vig1, hw):
    x = torch.randn(1, 3, *hw)
    (feat,) = vig1.forward_intermediates(x, indices=1, intermediates_only=True)
    assert feat.shape == (1, 192, hw[0] // 16, hw[1] // 16)
    assert vig1(x).shape == (1, 1000)


@torch.no_grad()
def test_pos_embed_resized_like_the_release(vig1):
    """The position term added at 224x320 is the 14x14 table bicubic-resized to 14x20."""
    x = torch.randn(1, 3, 224, 320)
    with_pos, hw = vig1._embed(x)
    assert hw == (14, 20)
    tokens = vig1.patch_embed(x).flatten(2).transpose(1, 2)
    grid = vig1.pos_embed.reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(14, 20), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(with_pos - tokens, ref)
    assert not torch.allclose(ref[:, :14], vig1.pos_embed[:, :14])  # a real resize, not a crop


@pytest.mark.parametrize("img_size,grid", [(256, (16, 16)), ((224, 320), (14, 20)), (160, (10, 10))])
def test_img_size_sets_the_stored_grid(img_size, grid):
    m = plain(img_size=img_size)
    assert m.patch_embed.grid_size == grid and m.pos_embed.shape == (1, grid[0] * grid[1], 192)
    with torch.no_grad():
        assert m(torch.randn(1, 3, grid[0] * 16, grid[1] * 16)).shape == (1, 1000)


@pytest.mark.parametrize("img_size", [160, 256, (224, 320)])
def test_224_checkpoint_into_other_img_size_matches_runtime_resize(tmp_path, img_size):
    """Loading resamples pos_embed once; the result must equal the 224 model resizing on the fly."""
    src = plain()
    path = tmp_path / "vig_t_224.pth"
    torch.save({"model": src.state_dict()}, path)
    dst = plain(img_size=img_size, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    hw = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=1e-5, atol=1e-5)


def test_dynamic_img_size_flag(vig1):
    dyn = plain(dynamic_img_size=True)
    dyn.load_state_dict(vig1.state_dict())
    x = torch.randn(1, 3, 224, 320)
    with torch.no_grad():
        torch.testing.assert_close(dyn(x), vig1(x))


def test_set_input_size_resamples_pos_embed():
    m = plain()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        before = m(x)
        m.set_input_size(img_size=256)
        assert m.pos_embed.shape == (1, 256, 192)
        torch.testing.assert_close(m(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", SIZES + [(97, 130)])
@torch.no_grad()
def test_vig_h_any_resolution(vig_h1, hw):
    x = torch.randn(1, 3, *hw)
    feats = vig_h1.forward_intermediates(x, intermediates_only=True)
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-hw[0] // r), -(-hw[1] // r)) for r in (4, 8, 16, 32)]
    assert vig_h1(x).shape == (1, 1000)
