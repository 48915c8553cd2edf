"""Box and mask AP with pycocotools' COCOeval, from torchvision Mask R-CNN outputs."""
import contextlib
import io

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def to_coco_results(outputs, image_ids, label_to_cat, with_masks=True, mask_threshold=0.5):
    """torchvision outputs (boxes xyxy in original image pixels, labels 1..K, scores, masks [N,1,H,W]
    probabilities) -> COCO result dicts (bbox xywh, category ids of the file, RLE masks)."""
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel() == 0:
            continue
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
        scores = out["scores"].detach().float().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        rles = None
        if with_masks and "masks" in out:
            m = (out["masks"].detach().cpu()[:, 0] > mask_threshold).numpy().astype(np.uint8)
            rles = [mask_utils.encode(np.asfortranarray(x)) for x in m]
            for r in rles:
                r["counts"] = r["counts"].decode("ascii")
        for i in range(len(scores)):
            r = {"image_id": int(image_id), "category_id": int(label_to_cat[int(labels[i])]),
                 "bbox": [round(v, 3) for v in xywh[i]], "score": float(scores[i])}
            if rles is not None:
                r["segmentation"] = rles[i]
            results.append(r)
    return results


def load_gt(ann_file):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        return COCO(ann_file)


def coco_from_dict(data):
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def segm_ground_truth(gt):
    """Box-only instances (empty 'segmentation', which training accepts) have no mask to match, and pycocotools
    cannot decode them: for mask AP they become ignore regions covering their box, so a detection of one is
    neither a hit nor a false positive. Box AP keeps them as they are."""
    from vig.downstream.coco import box_polygon, has_mask
    anns = gt.dataset["annotations"]
    if all(has_mask(a) for a in anns):
        return gt
    fixed = [a if has_mask(a) else dict(a, iscrowd=1, segmentation=[box_polygon(a["bbox"])]) for a in anns]
    return coco_from_dict(dict(gt.dataset, annotations=fixed))


def coco_evaluate(gt, results, iou_types=("bbox", "segm"), image_ids=None, verbose=False):
    """gt: a COCO object or a path. Returns {'bbox': {'AP':..., ...}, 'segm': {...}} with AP in [0, 1].
    No detections at all gives AP 0 (pycocotools cannot load an empty result list)."""
    if isinstance(gt, str):
        gt = load_gt(gt)
    metrics = {}
    for iou_type in iou_types:
        if not results:
            metrics[iou_type] = {k: 0.0 for k in STAT_NAMES}
            continue
        if iou_type == "segm" and "segmentation" not in results[0]:
            continue
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            truth = segm_ground_truth(gt) if iou_type == "segm" else gt
            dt = truth.loadRes([dict(r) for r in results])
            ev = COCOeval(truth, dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = sorted(int(i) for i in image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if verbose:
            print(f"[{iou_type}]\n{buf.getvalue()}")
        # -1 means "no ground truth in this size range": report it as such, not as 0
        metrics[iou_type] = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats[:6])}
    return metrics
