"""features_only on models with fewer blocks (stages) than the four default outputs: the default indices once
repeated blocks (depth 1 -> blocks.0 four times), so feature_info listed four entries while forward returned one and
a neck built from feature_info broke. Explicit indices that name no block, or one block twice, are refused."""
import pytest
import timm
import torch

import vig.models  # noqa: F401  registers the vig_* models
from vig.models.vig import default_out_indices


@pytest.mark.parametrize("depth,expected", [(1, (0,)), (2, (0, 1)), (3, (0, 1, 2)), (4, (0, 1, 2, 3)),
                                            (12, (2, 5, 8, 11))])
def test_default_out_indices_name_each_block_once(depth, expected):
    assert default_out_indices(depth) == expected


@pytest.mark.parametrize("depth", [1, 3])
def test_feature_info_matches_what_forward_returns(depth):
    m = timm.create_model("vig_tiny", features_only=True, depth=depth).eval()
    assert m.feature_info.module_name() == [f"blocks.{i}" for i in range(depth)]
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == m.feature_info.channels() == [192] * depth


def test_vig_h_with_fewer_stages_defaults_to_the_stages_it_has():
    m = timm.create_model("vig_h_tiny", features_only=True, depths=(1, 1), num_heads=(3, 6)).eval()
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == m.feature_info.channels() == [96, 192]


@pytest.mark.parametrize("out_indices,pattern", [
    ((0, 3), r"vig_tiny: out_indices \(0, 3\): \[3\] out of range; vig_tiny has 2 blocks \(depth 2\)"),
    ((-3,), r"\[-3\] out of range.*-2\.\.-1 from the end"),
    ((0, -2), r"names block \[0\] more than once; vig_tiny has 2 blocks"),
    (3, r"asks for the last 3 blocks, but vig_tiny has 2 blocks"),
    ((), r"out_indices is empty"),
])
def test_explicit_out_indices_that_do_not_fit_are_refused(out_indices, pattern):
    with pytest.raises(ValueError, match=pattern):
        timm.create_model("vig_tiny", features_only=True, depth=2, out_indices=out_indices)


def test_vig_h_explicit_out_indices_name_stages():
    with pytest.raises(ValueError, match=r"\[2\] out of range; vig_h_tiny has 2 stages \(len\(depths\) 2\)"):
        timm.create_model("vig_h_tiny", features_only=True, depths=(1, 1), num_heads=(3, 6), out_indices=(0, 2))


def test_explicit_out_indices_that_fit_still_work():
    m = timm.create_model("vig_tiny", features_only=True, depth=2, out_indices=(-1,))
    assert m.feature_info.module_name() == ["blocks.1"]
    assert timm.create_model("vig_tiny", features_only=True, depth=2, out_indices=1).feature_info.channels() == [192]
