"""ADE-style loading on non-square images, where a swapped height/width shows (the shared fixture is 64x64):
mmseg's keep-ratio rescale, training crops and their ignore-label padding, all against values worked out by hand."""
import os
import random

import numpy as np
import torch
from PIL import Image

from vig.downstream.ade import IGNORE, SegFolder, rescale_size


def test_rescale_fits_the_long_and_short_side_of_the_scale():
    # (2048, 512): the short side limits a 640x480 image, factor 512/480 -> 683x512
    assert rescale_size(640, 480, (2048, 512)) == (683, 512)
    assert rescale_size(480, 640, (2048, 512)) == (512, 683)  # portrait: the result stays portrait
    # a very wide image is limited by the long side instead: 4000x500 -> factor 2048/4000
    assert rescale_size(4000, 500, (2048, 512)) == (2048, 256)


def _folder(root, label):
    """One image (mid-grey PNG) and its index mask; label: [H, W] uint8."""
    for d in ("img", "ann"):
        os.makedirs(root / d, exist_ok=True)
    h, w = label.shape
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / "img" / "a.png")
    Image.fromarray(label).save(root / "ann" / "a.png")
    return str(root / "img"), str(root / "ann")


def test_training_crop_pads_bottom_and_right_with_the_ignore_label(tmp_path):
    h, w, crop = 24, 40, 48
    label = (np.arange(h * w).reshape(h, w) % 3).astype(np.uint8)
    # ratio 1 and a scale equal to the image size: no resize, so the crop is the whole image plus padding
    ds = SegFolder(*_folder(tmp_path, label), 3, train=True, scale=(w, h), crop=crop, ratio_range=(1.0, 1.0))
    ds.jitter = lambda im: im
    random.seed(0)
    for _ in range(4):  # both flip outcomes
        img, lab = ds[0]
        assert img.shape == (3, crop, crop) and lab.shape == (crop, crop)
        inside = lab[:h, :w].numpy()
        assert np.array_equal(inside, label) or np.array_equal(inside, label[:, ::-1])
        assert (lab[h:] == IGNORE).all() and (lab[:, w:] == IGNORE).all()  # 24 rows and 8 columns of padding
        assert (img[:, h:] == 0).all() and (img[:, :, w:] == 0).all() and (img[:, :h, :w] != 0).all()


def test_training_crops_are_windows_of_the_label_that_stay_inside_the_image(tmp_path):
    h, w, crop = 32, 64, 32  # landscape: only the x offset can vary
    label = np.tile(np.arange(w, dtype=np.uint8), (h, 1))  # the class is the column index
    ds = SegFolder(*_folder(tmp_path, label), w, train=True, scale=(w, h), crop=crop, ratio_range=(1.0, 1.0))
    ds.jitter = lambda im: im
    random.seed(0)
    offsets = set()
    for _ in range(8):
        _, lab = ds[0]
        assert not (lab == IGNORE).any()  # the image is at least crop-sized both ways: nothing to pad
        row = lab[0]
        row = row if row[0] < row[-1] else row.flip(0)
        x = int(row[0])
        assert torch.equal(row, torch.arange(x, x + crop)) and (lab == lab[0]).all()  # every row the same window
        offsets.add(x)
    assert len(offsets) > 1  # the crop does move along the long side
