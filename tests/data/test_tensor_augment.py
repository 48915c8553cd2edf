"""The Fashion-MNIST fast path (TensorAugment) against hand computations: a horizontal flip mirrors columns, the
shifted crop draws every offset in [-pad, pad] on both axes, normalisation is (x - mean) / std; and the validation
split of a run gets neither flip nor shift, whatever the training flags."""
from types import SimpleNamespace

import torch

from vig.data import idx
from vig.data.arrays import TensorAugment
from vig.data.build import DataConfig, _fmnist

MEAN, STD = (0.3,), (0.2,)


def _image():
    return torch.arange(2 * 5 * 6, dtype=torch.float32).view(2, 5, 6) / 60  # no symmetry: any flip shows


def test_normalise_and_flip_columns():
    x = _image()
    mean, std = torch.tensor(MEAN * 2).view(2, 1, 1), torch.tensor(STD * 2).view(2, 1, 1)
    torch.testing.assert_close(TensorAugment(MEAN * 2, STD * 2)(x), (x - mean) / std)
    torch.manual_seed(0)
    torch.testing.assert_close(TensorAugment(MEAN * 2, STD * 2, hflip=1.0)(x), (x.flip(-1) - mean) / std)


def test_shifted_crop_draws_every_offset():
    """pad 1: the crop of the zero-padded image starts at row / column 0, 1 or 2 (a shift of -1, 0 or +1), all 9
    pairs drawn over 200 seeds, and nothing else."""
    x = _image()[:1]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    crops = {(i, j): padded[:, i:i + 5, j:j + 6] for i in range(3) for j in range(3)}
    aug = TensorAugment((0.0,), (1.0,), pad=1)
    seen = set()
    for seed in range(200):
        torch.manual_seed(seed)
        y = aug(x)
        match = [k for k, c in crops.items() if torch.equal(y, c)]
        assert len(match) == 1, seed
        seen.add(match[0])
    assert seen == set(crops)


def test_validation_split_is_neither_flipped_nor_shifted():
    cfg = SimpleNamespace(data_dir=idx.FIXTURE_DIR, recipe="default", auto_augment=None, hflip=1.0, crop_pad=4)
    dc = DataConfig((1, 28, 28), MEAN, STD, "bilinear", 1.0)
    ds = _fmnist("test", dc, cfg, training=False, limit=3)
    images, _ = idx.load_split("test", idx.FIXTURE_DIR)
    for i in range(3):
        torch.manual_seed(i)
        expected = (torch.from_numpy(images[i].astype("float32")) / 255 - MEAN[0]) / STD[0]
        torch.testing.assert_close(ds[i][0], expected[None])
