"""COCO loading on non-square images, where a swapped height/width is visible (the shared fixture's images are all
64x64, so every h/w mix-up there goes unseen). Expected boxes and masks are worked out by hand below."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vig.downstream.coco import CocoInstances, hflip

H, W = 40, 72  # landscape
CATS = [{"id": 5, "name": "thing"}]


def _write(root, images, anns):
    os.makedirs(root / "img", exist_ok=True)
    for im in images:
        Image.fromarray(np.full((im["height"], im["width"], 3), 100, np.uint8)).save(root / "img" / im["file_name"])
    with open(root / "ann.json", "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": CATS}, f)
    return str(root / "img"), str(root / "ann.json")


def _ann(i, bbox, seg, image_id=1):
    return {"id": i, "image_id": image_id, "category_id": 5, "bbox": bbox, "iscrowd": 0, "area": 1.0,
            "segmentation": seg}


@pytest.fixture
def landscape(tmp_path):
    anns = [
        # polygon square x 10..30, y 4..14 (pixel corners): decodes to rows 4..13, columns 10..29
        _ann(1, [10.0, 4.0, 20.0, 10.0], [[10, 4, 30, 4, 30, 14, 10, 14]]),
        # box-only instance running past the bottom and right edges: clipped to the image, x2 = W, y2 = H
        _ann(2, [60.0, 30.0, 30.0, 25.0], []),
        # zero height: no box to learn, must be dropped (as a zero width one is)
        _ann(3, [5.0, 20.0, 8.0, 0.0], []),
    ]
    return _write(tmp_path, [{"id": 1, "file_name": "a.png", "width": W, "height": H}], anns)


def test_boxes_are_clipped_to_width_and_height_and_empty_boxes_dropped(landscape):
    ds = CocoInstances(*landscape, train=False)
    image, t = ds[0]
    assert image.shape == (3, H, W)
    assert t["boxes"].tolist() == [[10.0, 4.0, 30.0, 14.0], [60.0, 30.0, float(W), float(H)]]
    assert t["labels"].tolist() == [1, 1]  # category 5 is the first (only) class: label 1, 0 is background
    want = np.zeros((2, H, W), np.uint8)
    want[0, 4:14, 10:30] = 1  # the polygon, decoded at H x W (not W x H)
    want[1, 30:H, 60:W] = 1   # the box-only instance's mask is its clipped box
    assert np.array_equal(t["masks"].numpy(), want)


def test_hflip_mirrors_about_the_image_width(landscape):
    image, t = CocoInstances(*landscape, train=False)[0]
    fi, ft = hflip(image, t)
    # x -> W - x, with x1/x2 swapped; W = 72, not the height 40
    assert ft["boxes"].tolist() == [[W - 30.0, 4.0, W - 10.0, 14.0], [0.0, 30.0, W - 60.0, float(H)]]
    for box, m in zip(ft["boxes"], ft["masks"]):  # the flipped box still bounds the flipped mask
        ys, xs = np.nonzero(m.numpy())
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert torch.equal(fi, image.flip(-1))


def test_aspect_groups_put_portrait_images_in_group_1(tmp_path):
    images = [{"id": 1, "file_name": "wide.png", "width": 48, "height": 32},
              {"id": 2, "file_name": "tall.png", "width": 32, "height": 48},
              {"id": 3, "file_name": "square.png", "width": 32, "height": 32}]
    anns = [_ann(i, [1.0, 1.0, 8.0, 8.0], [], image_id=i) for i in (1, 2, 3)]
    ds = CocoInstances(*_write(tmp_path, images, anns), train=True)
    assert ds.aspect_groups() == [0, 1, 0]  # landscape 0, portrait 1, square counts as landscape


def test_train_split_drops_images_whose_only_box_is_empty(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in (1, 2, 3)]
    anns = [_ann(1, [1.0, 1.0, 8.0, 8.0], []), _ann(2, [4.0, 4.0, 6.0, 0.0], [], image_id=2),
            _ann(3, [4.0, 4.0, 0.0, 6.0], [], image_id=3)]
    ds = CocoInstances(*_write(tmp_path, images, anns), train=True)
    assert ds.ids == [1]  # zero height (image 2) and zero width (image 3) leave nothing to train on
