"""Viz on non-square grids and off-centre maps, where a swapped x/y or h/w shows (the other viz tests use square
images and maps centred on the image, symmetric under such a swap). Expected values are worked out by hand."""
import numpy as np
import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers vig_*)
from vig.viz.attn_maps import attention_maps
from vig.viz.capture import _grid
from vig.viz.erf import area_ratio, summarise


@pytest.fixture(scope="module")
def wide_maps():
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", depth=1, embed_dim=48, num_heads=1, dynamic_img_size=True).eval()
    rgb = np.random.default_rng(0).random((64, 96, 3)).astype(np.float32)  # 64 high, 96 wide: a 4x6 token grid
    return attention_maps(model, rgb, layer="0")


def test_default_query_is_the_centre_token_of_a_wide_grid(wide_maps):
    assert wide_maps["grid"] == (4, 6)  # (h, w)
    assert wide_maps["token"] == (3, 2)  # (x, y) = (w // 2, h // 2)
    fwd, bwd = wide_maps["maps"]["forward"], wide_maps["maps"]["backward"]
    assert fwd.shape == (4, 6)
    # query 2 * 6 + 3 = 15 in raster order: forward attention reaches keys 0..15 only, backward keys 15..23
    flat_f, flat_b = fwd.reshape(-1), bwd.reshape(-1)
    assert (flat_f[:16] > 0).all() and (flat_f[16:] == 0).all()
    assert (flat_b[:15] == 0).all() and (flat_b[15:] > 0).all()


def test_token_grid_comes_from_the_layers_input_as_height_then_width():
    call = ((torch.zeros(1, 8, 3, 5),), {})
    assert _grid(call, 15) == (3, 5)
    assert _grid(((torch.zeros(2, 15, 8), (3, 5)), {}), 15) == (3, 5)  # an (h, w) argument


def test_summary_of_an_off_centre_peak_on_a_wide_map():
    raw = np.zeros((21, 31))
    raw[4, 25] = 2.0  # row (y) 4, column (x) 25
    s = summarise(raw)
    assert s["peak_px"] == [25, 4] and s["centroid_px"] == [25.0, 4.0] and s["area_centre_px"] == [25, 4]
    # from the image centre (x 15, y 10): dx 10, dy -6
    assert s["peak_distance_to_centre_px"] == pytest.approx(np.hypot(10, 6))
    assert s["high_contribution_area"]["0.5"] == {"side_px": 1, "area_ratio": 1 / (21 * 31)}


def test_all_zero_wide_map_centres_on_the_image_centre():
    s = summarise(np.zeros((21, 31)))
    assert s["area_centre_px"] == [15, 10] and s["centroid_px"] is None  # [x, y]
    delta = np.zeros((21, 31))
    delta[10, 15] = 1.0
    assert area_ratio(delta, 0.5) == (1, 1 / (21 * 31))  # the default centre is (y 10, x 15)


def test_area_square_must_hold_more_than_the_threshold_not_exactly_it():
    m = np.zeros((5, 5))
    m[2, 2] = m[2, 4] = 1.0  # the centre pixel holds exactly half
    assert area_ratio(m, 0.5) == (5, 1.0)  # RepLKNet's "> thresh": the square grows until it takes the other pixel
    assert area_ratio(m, 0.49) == (1, 1 / 25)
