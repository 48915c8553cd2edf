"""Plain ViG at sizes that are not multiples of 16 (README, "Any input size"): `img_size=` stores the release's
img_size // 16 table, while the stem (k9 s8 p1, then k3 s2 p1) gives a token grid of ceil(((s - 7) // 8 + 1) / 2)
per side. That is one larger than s // 16 when s mod 16 >= 7 (e.g. 200, 216 = odd multiples of 8), and the table is
then resampled at every forward; at s mod 16 <= 6 (e.g. 100, 230) the grid equals s // 16 and the stem leaves
pixels unread instead."""
import pytest
import timm
import torch
import torch.nn.functional as F

import vig.models  # noqa: F401


def _model(img_size):
    torch.manual_seed(0)
    return timm.create_model("vig_tiny", depth=1, img_size=img_size).eval()


def _stem_grid(side):
    return -(-((side - 7) // 8 + 1) // 2)


@pytest.mark.parametrize("side", [192, 224, 256])
@torch.no_grad()
def test_multiples_of_16_use_the_stored_table_as_is(side):
    m = _model(side)
    x = torch.randn(1, 3, side, side)
    with_pos, hw = m._embed(x)
    assert hw == m.patch_embed.grid_size == (side // 16, side // 16)
    tokens = m.patch_embed(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(with_pos - tokens, m.pos_embed.expand_as(tokens))


@pytest.mark.parametrize("side", [200, 216, 232, 215])  # s mod 16 in 7..15
@torch.no_grad()
def test_grid_one_larger_and_table_resampled_each_forward(side):
    m = _model(side)
    n = side // 16
    assert m.patch_embed.grid_size == (n, n) and m.pos_embed.shape[1] == n * n  # the release's sizing
    x = torch.randn(1, 3, side, side)
    with_pos, hw = m._embed(x)
    assert hw == (n + 1, n + 1) == (_stem_grid(side),) * 2
    tokens = m.patch_embed(x).flatten(2).transpose(1, 2)
    grid = m.pos_embed.reshape(1, n, n, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=hw, mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(with_pos - tokens, ref)
    assert m(x).shape == (1, 1000)


@pytest.mark.parametrize("side", [100, 230, 225])  # s mod 16 in 1..6: not multiples of 16, grid NOT larger
@torch.no_grad()
def test_other_sizes_keep_the_floor_grid_and_leave_pixels_unread(side):
    m = _model(side)
    _, hw = m._embed(torch.randn(1, 3, side, side))
    assert hw == m.patch_embed.grid_size == (side // 16, side // 16) == (_stem_grid(side),) * 2
    assert m.patch_embed.unread_pixels(side) > 0
