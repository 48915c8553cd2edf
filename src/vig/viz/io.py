"""Image loading and all-or-nothing file writing for `vig viz`."""
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from vig.atomic import open_mode, writable_folder
from vig.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def load_image(path, size):
    """Resize the short side to size / 0.875 (bicubic) and centre-crop size x size, as the eval
    transform does. Returns the RGB crop as a float array in [0, 1], shape [size, size, 3]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            short = round(size / 0.875)
            w, h = im.size
            r = short / min(w, h)
            im = im.resize((max(size, round(w * r)), max(size, round(h * r))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"cannot read image {path}: {e}") from None


LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def to_tensor(rgb, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """[S, S, 3] array in [0, 1] -> normalised [1, C, S, S] float tensor, C = len(mean): a 1-channel
    model (vig_fmnist) gets the grayscale image it was trained on; the RGB array stays for display."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
    c = len(mean)
    if c == 1:
        x = (x * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True)
    elif c != 3:
        raise UsageError(f"cannot feed an RGB image to a model normalised over {c} channels (1 or 3 only)")
    x = (x - torch.tensor(mean).view(c, 1, 1)) / torch.tensor(std).view(c, 1, 1)
    return x.unsqueeze(0)


def list_images(folder, limit=None):
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--images: folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"--images: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files[:limit] if limit else files


def check_out_dir(out):
    return Path(writable_folder(out, "--out"))


def write_files(out_dir, payloads):
    """payloads: {file name: bytes}, all rendered before this is called. Every file goes to a temp
    file in out_dir first; they are renamed into place only once all were written, so an error
    (e.g. a full disk) leaves no partial file behind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    temps = []
    try:
        for name, data in payloads.items():
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, open_mode())
    except BaseException:
        for tmp in temps:
            os.unlink(tmp)
        raise
    paths = []
    for tmp, name in zip(temps, payloads):
        os.replace(tmp, out_dir / name)
        paths.append(out_dir / name)
    return paths


def png_bytes(fig, dpi=120):
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def json_bytes(obj):
    return (json.dumps(obj, indent=2) + "\n").encode()
