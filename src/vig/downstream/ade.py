"""ADE20K-format semantic segmentation data: an image folder and a folder of index PNGs with the same stems.
Label 255 is ignored. reduce_zero_label (ADE20K's convention): 0 ("other") -> 255 and every other label -1,
so the 150 classes become 0..149. Augmentation follows the mmseg ADE recipe: random rescale of a (2048, 512)
scale by 0.5-2.0, a random crop (at most 75% of it one class), horizontal flip, photometric distortion
(brightness, contrast, saturation, hue jitter; torchvision's ColorJitter approximating mmseg's), padding with the
ignore label.
"""
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import ColorJitter

from vig.errors import UsageError
from vig.downstream.coco import IMAGENET_MEAN, IMAGENET_STD

IGNORE = 255
IMG_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def pair_files(img_dir, ann_dir):
    for d, what in ((img_dir, "image"), (ann_dir, "annotation")):
        if not os.path.isdir(d):
            raise UsageError(f"{what} folder not found: {d}")
    imgs = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(IMG_EXTS))
    if not imgs:
        raise UsageError(f"no images in {img_dir}")
    pairs = []
    for f in imgs:
        ann = os.path.join(ann_dir, os.path.splitext(f)[0] + ".png")
        if not os.path.isfile(ann):
            raise UsageError(f"no annotation mask for {f}: expected {ann}")
        pairs.append((os.path.join(img_dir, f), ann))
    return pairs


def reduce_zero_label(label):
    """ADE20K's convention as mmseg applies it: 0 ("other") becomes the ignore label, every class shifts down by
    one, and pixels already ignored stay ignored (not 254)."""
    return np.where((label == 0) | (label == IGNORE), IGNORE, label - 1)


def check_mask_header(mask, image_size, path):
    if mask.mode not in ("L", "P", "I", "I;16"):
        raise UsageError(f"{path}: mask must be a single-channel index PNG, got mode {mask.mode}")
    if mask.size != image_size:
        raise UsageError(f"{path}: mask is {mask.size[0]}x{mask.size[1]} but its image is "
                         f"{image_size[0]}x{image_size[1]}")


def rescale_size(w, h, scale):
    """mmseg keep_ratio resize: the largest factor that fits (w, h) inside (long, short) of `scale`."""
    long, short = max(scale), min(scale)
    f = min(long / max(w, h), short / min(w, h))
    return max(1, int(w * f + 0.5)), max(1, int(h * f + 0.5))


class SegFolder(torch.utils.data.Dataset):
    def __init__(self, img_dir, ann_dir, num_classes, train=False, reduce_zero_label=False,
                 scale=(2048, 512), crop=512, ratio_range=(0.5, 2.0), cat_max_ratio=0.75):
        self.pairs = pair_files(img_dir, ann_dir)
        self.num_classes, self.train, self.reduce_zero_label = num_classes, train, reduce_zero_label
        self.scale, self.crop, self.ratio_range, self.cat_max_ratio = scale, crop, ratio_range, cat_max_ratio
        # mmseg PhotoMetricDistortion: brightness +-32/255, contrast and saturation 0.5-1.5, hue +-18 degrees
        self.jitter = ColorJitter(brightness=32 / 255, contrast=0.5, saturation=0.5, hue=18 / 360) if train else None
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        self.check_files()
        if not train:
            self.check_labels()

    def __len__(self):
        return len(self.pairs)

    def load(self, idx):
        ip, ap = self.pairs[idx]
        img = Image.open(ip).convert("RGB")
        lab = Image.open(ap)
        return img, self.labels(lab, ap)  # modes and sizes were checked at load (check_files)

    def labels(self, mask, path):
        """The index mask as int64 training labels, refused if any is outside 0..num_classes-1 and not ignored."""
        label = np.array(mask, dtype=np.int64)
        if self.reduce_zero_label:
            label = reduce_zero_label(label)
        bad = (label != IGNORE) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            raise UsageError(f"{path}: label {int(label[bad][0])} outside 0..{self.num_classes - 1} "
                             f"(and not the ignore label {IGNORE}); check --num-classes / --reduce-zero-label")
        return label

    def check_files(self):
        """Mask mode and size of every pair from the PNG/JPEG headers (no pixel decoding), so a bad mask stops the
        run at startup, not mid-training inside a loader worker."""
        for ip, ap in self.pairs:
            try:
                with Image.open(ip) as img, Image.open(ap) as lab:
                    check_mask_header(lab, img.size, ap)
            except OSError as e:  # UnidentifiedImageError, truncated headers: name the file, no traceback
                raise UsageError(f"cannot read {e.filename or ip} / {ap}: {e}") from None

    def check_labels(self):
        """Decode every mask once and check its values: done for evaluation splits, whose labels are otherwise
        first read at the first evaluation, possibly hours into training."""
        for _, ap in self.pairs:
            with Image.open(ap) as lab:
                self.labels(lab, ap)

    def normalize(self, img):
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std

    def __getitem__(self, idx):
        img, label = self.load(idx)
        if not self.train:  # eval: keep-ratio resize of the image only; the label stays at full size
            img = img.resize(rescale_size(*img.size, self.scale), Image.BILINEAR)
            return self.normalize(img), torch.from_numpy(label)
        r = random.uniform(*self.ratio_range)
        size = rescale_size(*img.size, (self.scale[0] * r, self.scale[1] * r))
        img = img.resize(size, Image.BILINEAR)
        label = np.array(Image.fromarray(label.astype(np.int32)).resize(size, Image.NEAREST), dtype=np.int64)
        y, x = self.pick_crop(label)
        c = self.crop
        img = self.normalize(self.jitter(img.crop((x, y, min(x + c, img.width), min(y + c, img.height)))))
        label = torch.from_numpy(label[y:y + c, x:x + c])
        if random.random() < 0.5:
            img, label = img.flip(-1), label.flip(-1)
        ph, pw = c - img.shape[1], c - img.shape[2]
        if ph > 0 or pw > 0:
            img = F.pad(img, (0, pw, 0, ph), value=0.0)
            label = F.pad(label, (0, pw, 0, ph), value=IGNORE)
        return img.contiguous(), label.contiguous()

    def pick_crop(self, label):
        h, w = label.shape
        c = self.crop
        y = x = 0
        for _ in range(10):  # mmseg: retry crops dominated by one class
            y, x = random.randint(0, max(h - c, 0)), random.randint(0, max(w - c, 0))
            patch = label[y:y + c, x:x + c]
            _, counts = np.unique(patch[patch != IGNORE], return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return y, x


class SegMetric:
    """Confusion-matrix mIoU (mean over classes that occur in the ground truth or the prediction) and
    pixel accuracy (aAcc), ignoring label 255."""

    def __init__(self, num_classes):
        self.k = num_classes
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred, target):
        pred, target = pred.reshape(-1).cpu(), target.reshape(-1).cpu()
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.numel()} pixels, target {target.numel()}")
        keep = target != IGNORE
        idx = target[keep] * self.k + pred[keep]
        self.cm += torch.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)

    def merge(self, other_cm):
        self.cm += other_cm.to(self.cm)

    def compute(self):
        cm = self.cm.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        total = cm.sum()
        return {"mIoU": float(iou[present].mean()) if present.any() else 0.0,
                "aAcc": float(tp.sum() / total) if total > 0 else 0.0,
                "IoU": [None if torch.isnan(v) else float(v) for v in iou]}
