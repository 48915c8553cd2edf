import json
import os

import numpy as np
import pytest
import torch

from conftest import CATEGORIES, SIZE, make_coco
from vig.downstream.coco import CocoInstances, ann_to_mask, check_categories, hflip
from vig.downstream.coco_eval import coco_evaluate, to_coco_results
from vig.errors import UsageError


def test_loader_targets_match_the_drawn_instances(coco):
    img_dir, ann, truth = coco
    ds = CocoInstances(img_dir, ann)
    assert ds.num_classes == 3 and ds.cat_to_label == {3: 1, 7: 2}
    assert ds.ids == [1, 2, 3, 4]  # eval keeps the empty image
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, SIZE, SIZE) and 0 <= image.min() and image.max() <= 1
        want = truth[t["image_id"]]  # crowd region of image 2 is not a training target
        assert t["labels"].tolist() == [ds.cat_to_label[c] for c, _ in want]
        assert t["masks"].shape == (len(want), SIZE, SIZE) and t["masks"].dtype == torch.uint8
        for box, m, (_, m_true) in zip(t["boxes"], t["masks"], want):
            assert np.array_equal(m.numpy(), m_true)  # polygon, compressed and uncompressed RLE all decode exactly
            ys, xs = np.nonzero(m_true)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # xywh -> xyxy


def test_train_split_drops_empty_images_and_flips_consistently(coco):
    img_dir, ann, _ = coco
    ds = CocoInstances(img_dir, ann, train=True)
    assert ds.ids == [1, 2, 3]
    image, t = CocoInstances(img_dir, ann)[0]
    fi, ft = hflip(image, t)
    assert torch.equal(fi.flip(-1), image) and torch.equal(ft["masks"].flip(-1), t["masks"])
    for box, m in zip(ft["boxes"], ft["masks"]):
        ys, xs = np.nonzero(m.numpy())
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _rewrite(ann, fn):
    with open(ann) as f:
        data = json.load(f)
    fn(data)
    with open(ann, "w") as f:
        json.dump(data, f)


def test_bad_inputs_give_clear_errors(coco, tmp_path):
    img_dir, ann, _ = coco
    with pytest.raises(UsageError, match="annotation file not found"):
        CocoInstances(img_dir, str(tmp_path / "nope.json"))
    with pytest.raises(UsageError, match="categories of .* do not match"):
        CocoInstances(img_dir, ann, categories=[{"id": 3, "name": "square"}, {"id": 8, "name": "disc"}])
    check_categories(CATEGORIES, CATEGORIES, "same")  # no error

    def wrong_rle_size(d):
        a = next(a for a in d["annotations"] if isinstance(a["segmentation"], dict))
        a["segmentation"]["size"] = [SIZE, SIZE + 8]
    _rewrite(ann, wrong_rle_size)
    ds = CocoInstances(img_dir, ann, train=True)
    with pytest.raises(UsageError, match=r"mask size \[64, 72\] does not match its image size \[64, 64\]"):
        [ds[i] for i in range(len(ds))]
    with pytest.raises(UsageError, match=r"mask size \[64, 72\] does not match its image size \[64, 64\]"):
        CocoInstances(img_dir, ann)  # an evaluation split is checked at load: COCOeval would fail on it later
    _rewrite(ann, lambda d: [a["segmentation"].update(size=[SIZE, SIZE]) for a in d["annotations"]
                             if isinstance(a["segmentation"], dict)])

    _rewrite(ann, lambda d: d["annotations"][0].update(category_id=99))
    with pytest.raises(UsageError, match="has category 99, not in"):
        CocoInstances(img_dir, ann)
    _rewrite(ann, lambda d: d["annotations"][0].update(category_id=3, bbox=[1, 2]))
    with pytest.raises(UsageError, match=r"has no \[x, y, w, h\] bbox"):
        CocoInstances(img_dir, ann)
    _rewrite(ann, lambda d: d["annotations"][0].update(bbox=[6.0, 8.0, 20.0, 20.0]))
    _rewrite(ann, lambda d: d["images"][0].update(width=SIZE * 2))
    with pytest.raises(UsageError, match="is 64x64 but .* says 128x64"):
        CocoInstances(img_dir, ann, train=True)[0]
    os.remove(os.path.join(img_dir, "img3.png"))
    with pytest.raises(UsageError, match="image file not found: .*img3.png"):
        CocoInstances(img_dir, ann, train=True)  # at load, not when a loader worker first reads it
    _rewrite(ann, lambda d: d.update(images=[im for im in d["images"] if im["id"] != 3]))
    _rewrite(ann, lambda d: d["annotations"].__setitem__(slice(None), []))
    with pytest.raises(UsageError, match="no image in .* has a non-crowd annotation"):
        CocoInstances(img_dir, ann, train=True)
    _rewrite(ann, lambda d: d.update(images=[]))
    with pytest.raises(UsageError, match="lists no images"):
        CocoInstances(img_dir, ann)
    with pytest.raises(UsageError, match="unrecognised segmentation"):
        ann_to_mask({"id": 1, "segmentation": {"foo": 1}}, SIZE, SIZE)


def _perfect_outputs(ds):
    outs, ids = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        n = len(t["labels"])
        outs.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.linspace(1, 0.5, n),
                     "masks": t["masks"][:, None].float()})
        ids.append(t["image_id"])
    return outs, ids


def test_perfect_predictions_give_ap_1_and_worse_ones_less(coco):
    img_dir, ann, _ = coco
    ds = CocoInstances(img_dir, ann)
    outs, ids = _perfect_outputs(ds)
    res = to_coco_results(outs, ids, ds.label_to_cat)
    assert {r["category_id"] for r in res} == {3, 7}
    m = coco_evaluate(ann, res)
    assert m["bbox"]["AP"] == pytest.approx(1.0) and m["segm"]["AP"] == pytest.approx(1.0)
    for o in outs:  # shift every box and mask by 2 px: IoU drops, so AP at the stricter thresholds drops
        o["boxes"] = o["boxes"] + 2
        o["masks"] = torch.roll(o["masks"], (2, 2), (-2, -1))
    m = coco_evaluate(ann, to_coco_results(outs, ids, ds.label_to_cat))
    assert m["bbox"]["AP"] < 0.9 and m["segm"]["AP"] < 0.9 and m["bbox"]["AP50"] == pytest.approx(1.0)
    assert coco_evaluate(ann, [])["bbox"]["AP"] == 0.0


def test_wrong_category_counts_as_miss(tmp_path):
    img_dir, ann, _ = make_coco(str(tmp_path / "c"), n_images=3)
    ds = CocoInstances(img_dir, ann)
    outs, ids = _perfect_outputs(ds)
    for o in outs:
        o["labels"] = 3 - o["labels"]  # swap the two classes
    m = coco_evaluate(ann, to_coco_results(outs, ids, ds.label_to_cat))
    assert m["bbox"]["AP"] == pytest.approx(0.0) and m["segm"]["AP"] == pytest.approx(0.0)
