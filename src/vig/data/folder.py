"""An ImageFolder root (train/ and val/, one sub-folder per class) checked up front, so a user mistake is one clear
line before any training starts, and unreadable images are named rather than crashing a worker mid-epoch."""
import os
import sys
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from vig.errors import UsageError
from vig.ranks import is_first_process

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
VERIFY_LIMIT = 200_000  # above this, a full pre-scan costs minutes; unreadable files are then skipped lazily


def scan_split(split_dir: Path, classes=None):
    """[(path, class_index)] and the class names of one split folder; raises UsageError naming what is wrong."""
    if not split_dir.is_dir():
        raise UsageError(f"data folder {split_dir} does not exist (expected an ImageFolder: <root>/train/<class>/*.jpg "
                         f"and <root>/val/<class>/*.jpg)")
    found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise UsageError(f"data folder {split_dir} has no class sub-folders (expected {split_dir}/<class>/<image>)")
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise UsageError(f"{split_dir} has classes not in the training set: {', '.join(extra[:5])}")
    samples = []
    for name in found:
        files = sorted(p for p in (split_dir / name).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
        if not files:
            raise UsageError(f"class folder {split_dir / name} holds no images ({', '.join(IMG_EXTENSIONS)})")
        samples += [(str(p), classes.index(name)) for p in files]
    return samples, list(classes)


def drop_corrupt(samples, split_dir):
    """Open every header (cheap) and drop files PIL cannot identify; say which. Skipped on huge folders."""
    if len(samples) > VERIFY_LIMIT:
        return samples
    good, bad = [], []
    for path, label in samples:
        try:
            with Image.open(path) as im:
                im.verify()
            good.append((path, label))
        except Exception:  # PIL raises many types for broken files; all mean "unreadable"
            bad.append(path)
    if bad and is_first_process():  # every torchrun process scans; one says it
        shown = ", ".join(os.path.relpath(p, split_dir) for p in bad[:5]) + (" ..." if len(bad) > 5 else "")
        print(f"warning: skipping {len(bad)} corrupt image file(s) in {split_dir}: {shown}", file=sys.stderr)
    if not good:
        raise UsageError(f"no readable images in {split_dir} ({len(bad)} corrupt)")
    return good


MAX_STAND_INS = 16


class CheckedImageFolder(Dataset):
    """ImageFolder whose loader skips (and names) an unreadable file instead of killing the run. mode: the PIL mode
    images are read in ("L" for a one-channel model)."""

    def __init__(self, split_dir, classes=None, transform=None, mode="RGB"):
        self.root = Path(split_dir)
        self.mode = mode
        samples, self.classes = scan_split(self.root, classes)
        self.samples = drop_corrupt(samples, self.root)
        self.targets = [label for _, label in self.samples]
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        # a few neighbours stand in for an unreadable file; more in a row means the folder itself went away (an
        # unmounted disk), where trying every file would print a warning per image and then fail unnamed
        for attempt in range(min(MAX_STAND_INS, len(self.samples))):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                with Image.open(path) as im:
                    img = im.convert(self.mode)
                return (self.transform(img) if self.transform else img), label
            except Exception as e:
                error = e
                print(f"warning: skipping unreadable image {path}", file=sys.stderr)
        raise OSError(f"{attempt + 1} image(s) in a row unreadable in {self.root}, the last {path} "
                      f"({type(error).__name__}: {error}); is the data folder still there?")
