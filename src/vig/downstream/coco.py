"""COCO-format instance dataset for torchvision's Mask R-CNN.

Targets follow torchvision: boxes xyxy float [N,4], labels int64 in 1..K (0 is background), masks uint8
[N,H,W]. Category ids of the file are mapped to 1..K in ascending id order; `categories` keeps the mapping
so a checkpoint can refuse a dataset whose categories differ. Crowd regions are not trained on (they are
left to COCOeval, which ignores detections on them). Resizing is done by the model's transform.
"""
import json
import os
import random

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from vig.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_coco_json(ann_file):
    if not os.path.isfile(ann_file):
        raise UsageError(f"annotation file not found: {ann_file}")
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UsageError(f"annotation file {ann_file} is not valid JSON: {e}") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise UsageError(f"annotation file {ann_file} has no '{key}' list (not COCO format)")
    if not data["images"]:
        raise UsageError(f"annotation file {ann_file} lists no images")
    if not data["categories"]:
        raise UsageError(f"annotation file {ann_file} lists no categories")
    return data


def check_categories(expected, found, where):
    """expected/found: lists of {'id','name'}; raise a UsageError naming the first difference."""
    e = [(int(c["id"]), c["name"]) for c in expected]
    f = [(int(c["id"]), c["name"]) for c in found]
    if e != f:
        diff = sorted(set(e) ^ set(f))[:5]
        raise UsageError(f"categories of {where} do not match the model's ({len(f)} vs {len(e)} categories; "
                         f"differing (id, name): {diff})")


def ann_to_mask(ann, h, w):
    """Polygon list, uncompressed RLE or compressed RLE -> uint8 [h, w]."""
    seg = ann.get("segmentation")
    if seg is None or (isinstance(seg, list) and not seg):
        return None
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            raise UsageError(f"annotation {ann.get('id')}: polygon needs at least 3 points")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise UsageError(f"annotation {ann.get('id')}: mask size {list(seg['size'])} does not match its "
                             f"image size [{h}, {w}]")
        rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    else:
        raise UsageError(f"annotation {ann.get('id')}: unrecognised segmentation format")
    return mask_utils.decode(rle).astype(np.uint8)


def has_mask(ann):
    return bool(ann.get("segmentation"))


def box_polygon(bbox):
    x, y, w, h = bbox
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def ground_truth(data, ann_file):
    """pycocotools' COCO object for evaluation, from the already loaded (and size-completed) `data`."""
    from vig.downstream.coco_eval import coco_from_dict, segm_ground_truth
    gt = coco_from_dict(data)
    segm = segm_ground_truth(gt)
    for ann in segm.dataset["annotations"]:
        check_decodable(segm, ann, ann_file)
    return gt


def check_polygons(ann, ann_file):
    """A polygon segmentation's shape, checked for every annotation when the file loads (training decoded a flat
    list only when its image came up, and failed there with a bare TypeError)."""
    seg = ann.get("segmentation")
    if isinstance(seg, list) and any(not isinstance(p, list) for p in seg):
        raise UsageError(f"annotation {ann.get('id')} in {ann_file}: segmentation must be a list of polygons "
                         f"[[x1, y1, x2, y2, ...], ...], got a flat list")
    if isinstance(seg, list) and any(len(p) < 6 for p in seg):
        raise UsageError(f"annotation {ann.get('id')} in {ann_file}: a polygon has fewer than 3 points "
                         f"(COCOeval cannot decode it)")


def check_decodable(gt, ann, ann_file):
    """COCOeval decodes every ground-truth mask; pycocotools fails there with bare IndexError/TypeError (or a
    size mismatch against the predictions), so try it once here and name the annotation."""
    info = gt.imgs[ann["image_id"]]
    seg = ann["segmentation"]
    if isinstance(seg, dict) and list(seg.get("size", [])) != [info["height"], info["width"]]:
        raise UsageError(f"annotation {ann.get('id')} in {ann_file}: mask size {list(seg.get('size', []))} does "
                         f"not match its image size [{info['height']}, {info['width']}]")
    check_polygons(ann, ann_file)
    try:
        gt.annToRLE(ann)
    except Exception as e:
        raise UsageError(f"annotation {ann.get('id')} in {ann_file}: segmentation cannot be decoded "
                         f"({type(e).__name__}: {e})") from None


class CocoInstances(torch.utils.data.Dataset):
    """`root`: image folder; `ann_file`: COCO json. train=True drops images with no usable instance
    (as detectron2/mmdet do) and applies a random horizontal flip."""

    def __init__(self, root, ann_file, train=False, categories=None, with_masks=True):
        data = load_coco_json(ann_file)
        if not os.path.isdir(root):
            raise UsageError(f"image folder not found: {root}")
        self.root, self.ann_file, self.train, self.with_masks = root, ann_file, train, with_masks
        self.categories = sorted(({"id": int(c["id"]), "name": c["name"]} for c in data["categories"]),
                                 key=lambda c: c["id"])
        if categories is not None:
            check_categories(categories, self.categories, ann_file)
        self.cat_to_label = {c["id"]: i + 1 for i, c in enumerate(self.categories)}
        self.label_to_cat = {v: k for k, v in self.cat_to_label.items()}
        self.images = {int(im["id"]): im for im in data["images"]}
        if len(self.images) != len(data["images"]):  # a dict would keep one of each silently
            seen = [int(im["id"]) for im in data["images"]]
            dup = next(i for i in seen if seen.count(i) > 1)
            raise UsageError(f"{ann_file} lists image id {dup} more than once")
        self._check_image_files()
        self.anns = {i: [] for i in self.images}
        for a in data["annotations"]:
            if int(a["image_id"]) not in self.images:
                raise UsageError(f"annotation {a.get('id')} refers to image {a['image_id']}, not in {ann_file}")
            if len(a.get("bbox") or []) != 4:
                raise UsageError(f"annotation {a.get('id')} has no [x, y, w, h] bbox")
            if int(a["category_id"]) not in self.cat_to_label:
                raise UsageError(f"annotation {a.get('id')} has category {a['category_id']}, not in {ann_file}")
            if with_masks:
                check_polygons(a, ann_file)
            self.anns[int(a["image_id"])].append(a)
        ids = sorted(self.images)
        if train:
            ids = [i for i in ids if any(self._usable(a) for a in self.anns[i])]
            if not ids:
                raise UsageError(f"no image in {ann_file} has a non-crowd annotation with a positive box")
        self.ids = ids
        # evaluation's ground truth, built (and its masks decoded once) now: a COCO file that COCOeval cannot read
        # fails here, not after a whole training epoch
        self.gt = None if train else ground_truth(data, ann_file)

    def _check_image_files(self):
        """Every listed image must exist (a missing one would otherwise stop training mid-epoch); sizes missing
        from the file are read from the image header, since evaluation needs them."""
        for image_id, info in self.images.items():
            path = os.path.join(self.root, info["file_name"])
            if not os.path.isfile(path):
                raise UsageError(f"image file not found: {path} (image id {image_id} in {self.ann_file})")
            if "width" not in info or "height" not in info:
                info["width"], info["height"] = image_size(path)

    @staticmethod
    def _usable(a):
        return not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0

    @property
    def num_classes(self):  # background included, as torchvision counts
        return len(self.categories) + 1

    def __len__(self):
        return len(self.ids)

    def aspect_groups(self):
        """0 for landscape (w >= h), 1 for portrait, per dataset index (sizes from the annotation file)."""
        out = []
        for i in self.ids:
            info = self.images[i]
            out.append(int(info.get("height", 0) > info.get("width", 0)))
        return out

    def load_image(self, image_id):
        info = self.images[image_id]
        path = os.path.join(self.root, info["file_name"])
        if not os.path.isfile(path):
            raise UsageError(f"image file not found: {path} (image id {image_id} in {self.ann_file})")
        img = Image.open(path).convert("RGB")
        if "width" in info and "height" in info and (img.width, img.height) != (info["width"], info["height"]):
            raise UsageError(f"{path} is {img.width}x{img.height} but {self.ann_file} says "
                             f"{info['width']}x{info['height']}")
        return img

    def __getitem__(self, idx):
        image_id = self.ids[idx]
        img = self.load_image(image_id)
        w, h = img.size
        boxes, labels, masks = [], [], []
        for a in self.anns[image_id]:
            if not self._usable(a):
                continue
            x, y, bw, bh = a["bbox"]
            x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.cat_to_label[int(a["category_id"])])
            if self.with_masks:
                m = ann_to_mask(a, h, w)
                if m is None:  # box-only annotation: the box itself is the mask
                    m = np.zeros((h, w), np.uint8)
                    m[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1
                masks.append(m)
        image = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": image_id,
        }
        if self.with_masks:
            target["masks"] = (torch.from_numpy(np.stack(masks)) if masks
                               else torch.zeros((0, h, w), dtype=torch.uint8))
        if self.train and random.random() < 0.5:
            image, target = hflip(image, target)
        return image, target


def hflip(image, target):
    w = image.shape[-1]
    image = image.flip(-1)
    t = dict(target)
    b = target["boxes"].clone()
    b[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    t["boxes"] = b
    if "masks" in target:
        t["masks"] = target["masks"].flip(-1)
    return image, t


def collate(batch):
    return tuple(zip(*batch))


def image_size(path):
    """(width, height) from the file's header, or one line naming a file PIL cannot read."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:  # UnidentifiedImageError, truncated headers
        raise UsageError(f"cannot read image {path}: {e}") from None
