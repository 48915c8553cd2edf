"""README, "## Models": ViG-H's features_only gives its 4 stages at strides 4-32, an out_indices repeated is refused
(only plain ViG's repeats and ViG-H's out-of-range were tested), and `vig info vig_h_tiny --img-size N --features`
lists the 4 stages."""
import pytest
import timm

import vig.models  # noqa: F401
from vig.cli import main


@pytest.mark.parametrize("out_indices", [(1, 1), (0, -4), (3, -1)])
def test_vig_h_repeated_out_indices_are_refused(out_indices):
    with pytest.raises(ValueError, match=r"more than once"):
        timm.create_model("vig_h_tiny", features_only=True, depths=(1, 1, 1, 1), out_indices=out_indices)


def test_vig_info_features_lists_vig_h_stages(capsys):
    assert main(["info", "vig_h_tiny", "--img-size", "64", "--features"]) == 0
    out = capsys.readouterr().out
    assert "params: 28,600,680" in out  # the README table's count
    rows = [line.strip() for line in out.splitlines() if "reduction" in line]
    assert rows == [f"layers.{i}.blocks: channels {c}, reduction {r}"
                    for i, (c, r) in enumerate([(96, 4), (192, 8), (384, 16), (768, 32)])]
