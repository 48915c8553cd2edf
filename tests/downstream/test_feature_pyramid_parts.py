"""Pieces of the dense backbone checked by hand: ViTDet's simple feature pyramid keeps the stride-16 map and
max-pools it for stride 32, and a model with several features per stride gives the last one of each."""
import torch

from vig.downstream.backbone import SimpleFeaturePyramid, _stage_indices


def test_simple_pyramid_levels_and_max_pool():
    torch.manual_seed(0)
    sfp = SimpleFeaturePyramid(8).eval()
    x = torch.randn(1, 8, 4, 6)
    up4, up2, same, down = sfp(x)
    assert up4.shape == (1, 2, 16, 24) and up2.shape == (1, 4, 8, 12) and sfp.channels == [2, 4, 8, 8]
    assert torch.equal(same, x)
    want = x.reshape(1, 8, 2, 2, 3, 2).amax(dim=(3, 5))  # the max of each 2x2 block
    assert torch.equal(down, want)


def test_stage_indices_take_the_last_feature_of_each_stride():
    info = [{"reduction": r} for r in (4, 4, 8, 8, 8, 16, 16, 32)]
    assert _stage_indices(info) == [1, 4, 6, 7]
    assert _stage_indices([{"reduction": 16}] * 3) is None  # plain: one stride for every block
