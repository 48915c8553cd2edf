"""COCO results and evaluation details the perfect-prediction tests cannot see: mask probabilities are thresholded,
box-only instances are ignore regions for mask AP (not misses), and `image_ids` limits the evaluation."""
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from vig.downstream.coco import CocoInstances
from vig.downstream.coco_eval import coco_evaluate, to_coco_results


def test_results_threshold_mask_probabilities_and_convert_boxes():
    probs = torch.full((1, 1, 6, 8), 0.3)  # below 0.5: background, though not zero
    probs[0, 0, 1:4, 2:7] = 0.9
    probs[0, 0, 5, 0] = 0.5  # exactly 0.5 is not above the threshold
    out = {"boxes": torch.tensor([[2.0, 1.0, 7.0, 4.0]]), "labels": torch.tensor([2]), "scores": torch.tensor([0.8]),
           "masks": probs}
    (r,) = to_coco_results([out], [11], {1: 3, 2: 7})
    assert r["image_id"] == 11 and r["category_id"] == 7 and r["bbox"] == [2.0, 1.0, 5.0, 3.0]  # xyxy -> xywh
    want = np.zeros((6, 8), np.uint8)
    want[1:4, 2:7] = 1
    assert np.array_equal(mask_utils.decode(r["segmentation"]), want)


def _outputs(ds, skip=()):
    """Perfect predictions (the targets themselves), leaving out instance (image_id, index) pairs in `skip`."""
    outs, ids = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        keep = [j for j in range(len(t["labels"])) if (t["image_id"], j) not in skip]
        outs.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep], "scores": torch.ones(len(keep)),
                     "masks": t["masks"][keep][:, None].float()})
        ids.append(t["image_id"])
    return outs, ids


def test_a_missed_box_only_instance_costs_box_ap_but_not_mask_ap(coco):
    img_dir, ann, _ = coco
    data = json.load(open(ann))
    data["annotations"][0]["segmentation"] = []  # image 1's square: box-only
    json.dump(data, open(ann, "w"))
    ds = CocoInstances(img_dir, ann)
    outs, ids = _outputs(ds, skip={(1, 0)})  # no detection for it at all
    m = coco_evaluate(ds.gt, to_coco_results(outs, ids, ds.label_to_cat))
    assert m["bbox"]["AP"] < 0.9  # a real ground-truth box was missed
    assert m["segm"]["AP"] == pytest.approx(1.0)  # for masks it is an ignore region: missing it costs nothing


def test_image_ids_limit_the_evaluation(coco):
    img_dir, ann, _ = coco
    ds = CocoInstances(img_dir, ann)
    outs, ids = _outputs(ds)
    res = [r for r in to_coco_results(outs, ids, ds.label_to_cat) if r["image_id"] == 1]  # only image 1 predicted
    assert coco_evaluate(ds.gt, res, image_ids=[1])["bbox"]["AP"] == pytest.approx(1.0)
    assert coco_evaluate(ds.gt, res)["bbox"]["AP"] < 0.9  # over all images the others' instances are missed
