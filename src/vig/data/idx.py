"""Fashion-MNIST from its four IDX files, read with numpy (no torchvision download machinery, no network).

The Debian package `dataset-fashion-mnist` installs them under /usr/share/datasets/fashion-mnist/; torchvision's
`FashionMNIST/raw/` folder holds the same files (gzipped and/or extracted), so either can be passed as --data-dir.
"""
import gzip
import os
from pathlib import Path

import numpy as np

from vig.errors import UsageError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = (0.2860,), (0.3530,)  # over the 60k training images, pixel values in [0, 1]
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
INSTALL_HINT = ("install it with `apt-get install -y dataset-fashion-mnist`, or pass --data-dir DIR holding "
                "train-images-idx3-ubyte.gz & co. (torchvision's FashionMNIST/raw folder works)")


def _find_file(root: Path, stem: str):
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def find_dir(data_dir=None) -> Path:
    """The folder holding the four files: --data-dir (or its FashionMNIST/raw subfolder), else the Debian path."""
    candidates = [Path(data_dir)] if data_dir else [SYSTEM_DIR]
    if data_dir:
        candidates.append(Path(data_dir) / "FashionMNIST" / "raw")
    for root in candidates:
        if all(_find_file(root, stem) for pair in FILES.values() for stem in pair):
            return root
    where = data_dir or SYSTEM_DIR
    if not Path(where).exists():
        raise UsageError(f"Fashion-MNIST not found: {where} does not exist; {INSTALL_HINT}")
    raise UsageError(f"Fashion-MNIST not found in {where}: the four IDX files are missing or incomplete; "
                     f"{INSTALL_HINT}")


def read_idx(path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic 0x00 0x00 <type> <ndim>, big-endian int32 dims, raw data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UsageError(f"cannot read IDX file {path}: {e} (truncated or corrupt?)") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UsageError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset, count = 4 + 4 * ndim, int(np.prod(dims)) if dims else 0
    if len(raw) != offset + count:
        raise UsageError(f"{path}: header says {dims} ({count} bytes) but the file holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(split: str, data_dir=None):
    """(images uint8 [N,28,28], labels int64 [N]) for split 'train' or 'test'."""
    root = find_dir(data_dir)
    img_stem, lbl_stem = FILES[split]
    images, labels = read_idx(_find_file(root, img_stem)), read_idx(_find_file(root, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UsageError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    if labels.size and labels.max() >= len(CLASSES):
        raise UsageError(f"{root}: {split} labels go up to {labels.max()}, Fashion-MNIST has {len(CLASSES)} classes")
    return images, labels.astype(np.int64)


def write_idx_gz(path, array: np.ndarray):
    """Write a uint8 array as gzipped IDX (used to build the committed fixture), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:  # mtime=0: reproducible bytes
        f.write(header + array.tobytes())
    os.replace(tmp, path)
