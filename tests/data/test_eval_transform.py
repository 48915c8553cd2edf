"""The validation transform (build_eval / a run's val split) against PIL by hand: resize the short side to
floor(size / crop_pct) with the asked interpolation, center crop `size`, scale to [0, 1], normalise per channel.
A crop_pct or interpolation that never reached timm's transform would score a checkpoint on other pixels."""
import numpy as np
import pytest
import torch
from PIL import Image

from vig.data.build import DataConfig, build_eval

MEAN, STD = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)


def _reference(img, size, crop_pct, mode):
    scale = int(size / crop_pct)
    off = (scale - size) // 2
    a = np.asarray(img.resize((scale, scale), mode).crop((off, off, off + size, off + size)), np.float64) / 255
    return (torch.from_numpy(a).permute(2, 0, 1) - torch.tensor(MEAN).view(3, 1, 1).double()) \
        / torch.tensor(STD).view(3, 1, 1).double()


@pytest.mark.parametrize("interpolation, mode", [("bicubic", Image.BICUBIC), ("nearest", Image.NEAREST)])
def test_eval_resize_crop_and_normalise(tmp_path, interpolation, mode):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (tmp_path / "val" / "a").mkdir(parents=True)
    img.save(tmp_path / "val" / "a" / "x.png")
    dc = DataConfig((3, 16, 16), MEAN, STD, interpolation, 0.5)  # resize 40 -> 32, crop the middle 16
    ds, _ = build_eval(str(tmp_path), None, dc)
    x, _ = ds[0]
    assert x.shape == (3, 16, 16)
    # the same PIL resize and float32 ToTensor / Normalize: only float rounding apart
    torch.testing.assert_close(x.double(), _reference(img, 16, 0.5, mode), rtol=0, atol=1e-5)
