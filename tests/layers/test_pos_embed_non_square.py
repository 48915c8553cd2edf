"""resample_pos_embed from a non-square stored grid (a model built with img_size=(h, w), h != w): the table is read
as old_hw[0] rows of old_hw[1] tokens (raster order). Square grids cannot tell rows from columns, so they would hide
a swapped reshape."""
import timm
import torch
import torch.nn.functional as F

import vig.models  # noqa: F401  (registers the models)
from vig.layers import resample_pos_embed


def _reference(pe, old_hw, new_hw):
    grid = pe.double().reshape(1, old_hw[0], old_hw[1], -1).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=new_hw, mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)


def test_non_square_table_is_read_row_major():
    torch.manual_seed(0)
    pe = torch.randn(1, 2 * 3, 8)
    out = resample_pos_embed(pe, (4, 5), (2, 3))
    torch.testing.assert_close(out.double(), _reference(pe, (2, 3), (4, 5)), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_model_built_non_square_adds_the_resampled_table():
    """vig_tiny at img_size (32, 48) stores a 2 x 3 table; a 64 x 64 input (4 x 4 tokens) gets it resampled."""
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", depth=1, img_size=(32, 48)).eval()
    assert model.patch_embed.grid_size == (2, 3)
    x = torch.randn(1, 3, 64, 64)
    with_pos, hw = model._embed(x)
    tokens = model.patch_embed(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close((with_pos - tokens).double(), _reference(model.pos_embed, (2, 3), (4, 4)),
                               rtol=1e-5, atol=1e-6)
