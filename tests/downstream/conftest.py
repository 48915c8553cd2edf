"""Small data the downstream tests make: a COCO-format instance set (polygons, compressed and uncompressed RLE,
a crowd region, an image with no annotation) and an ADE-style segmentation folder, all 64x64 pixels."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

SIZE = 64
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 1, "mlp_hidden_multiple": 32}
CATEGORIES = [{"id": 3, "name": "square"}, {"id": 7, "name": "disc"}]
COLORS = {3: (220, 40, 40), 7: (40, 200, 60)}


def square_mask(x, y, s):
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[y:y + s, x:x + s] = 1
    return m


def disc_mask(cx, cy, r):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint8)


def rle(m, compressed=True):
    r = mask_utils.encode(np.asfortranarray(m))
    if compressed:
        return {"size": r["size"], "counts": r["counts"].decode("ascii")}
    flat = m.flatten(order="F")  # uncompressed COCO RLE: run lengths in column-major order, starting with zeros
    counts, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(n)
            cur, n = v, 0
        n += 1
    counts.append(n)
    return {"size": [SIZE, SIZE], "counts": counts}


def bbox_of(m):
    ys, xs = np.nonzero(m)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def make_coco(root, n_images=4):
    """Returns (image folder, annotation path, {image_id: [(category, mask), ...]} of non-crowd instances)."""
    img_dir = os.path.join(root, "images")
    os.makedirs(img_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    specs = {  # image id -> list of (category, mask, encoding, iscrowd)
        1: [(3, square_mask(6, 8, 20), "polygon", 0), (7, disc_mask(44, 40, 12), "rle", 0)],
        2: [(3, square_mask(30, 30, 26), "rle_raw", 0), (7, disc_mask(14, 14, 8), "polygon_disc", 0),
            (3, square_mask(0, 50, 12), "rle_raw", 1)],
        3: [(7, disc_mask(32, 30, 16), "rle", 0)],
        4: [],
    }
    for i in range(5, n_images + 1):
        specs[i] = [(3, square_mask(10 + i, 12, 18), "polygon", 0)]
    images, anns, truth = [], [], {}
    for image_id, objs in specs.items():
        if image_id > n_images and image_id != 4:
            continue
        pix = (rng.integers(90, 130, (SIZE, SIZE, 3))).astype(np.uint8)
        for cat, m, _, _ in objs:
            pix[m.astype(bool)] = COLORS[cat]
        name = f"img{image_id}.png"
        Image.fromarray(pix).save(os.path.join(img_dir, name))
        images.append({"id": image_id, "file_name": name, "width": SIZE, "height": SIZE})
        truth[image_id] = []
        for cat, m, enc, crowd in objs:
            if enc == "polygon":  # squares: exact pixel-corner polygon
                x, y, w, h = bbox_of(m)
                seg = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            elif enc == "polygon_disc":
                x, y, w, h = bbox_of(m)
                t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
                cx, cy, r = x + w / 2, y + h / 2, w / 2
                seg = [np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).reshape(-1).round(2).tolist()]
                m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, SIZE, SIZE)))
            else:
                seg = rle(m, compressed=(enc == "rle"))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": bbox_of(m),
                         "area": float(m.sum()), "iscrowd": crowd, "segmentation": seg})
            if not crowd:
                truth[image_id].append((cat, m))
    ann_path = os.path.join(root, "instances.json")
    with open(ann_path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": CATEGORIES}, f)
    return img_dir, ann_path, truth


def make_seg(root, n=4, num_classes=3, size=SIZE, zero_label=True):
    """Stripes of classes (values 1..num_classes with 0 = 'other' when zero_label) and a 255 corner."""
    img_dir, ann_dir = os.path.join(root, "img"), os.path.join(root, "ann")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    palette = np.array([(128, 128, 128), (220, 40, 40), (40, 200, 60), (40, 60, 220), (200, 200, 40)], np.uint8)
    for i in range(n):
        lab = np.zeros((size, size), np.uint8)
        for c in range(num_classes):
            lab[:, (c * size) // num_classes + i:] = c + 1 if zero_label else c
        lab[: size // 8, : size // 8] = 0 if zero_label else 255
        img = palette[np.minimum(lab, len(palette) - 1)] if zero_label else palette[np.minimum(lab + 1, 4)]
        Image.fromarray(img).save(os.path.join(img_dir, f"s{i}.jpg"), quality=95)
        Image.fromarray(lab).save(os.path.join(ann_dir, f"s{i}.png"))
    return img_dir, ann_dir


@pytest.fixture
def coco(tmp_path):
    return make_coco(str(tmp_path / "coco"))


@pytest.fixture
def segdata(tmp_path):
    return make_seg(str(tmp_path / "seg"))


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many tiny ops; one intra-op thread avoids thread hand-off costs that dominate on a shared
    2-core CI box (measured ~10x faster under load). Restored afterwards so other areas are unaffected."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
