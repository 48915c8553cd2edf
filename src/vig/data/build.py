"""Datasets and transforms for a run: Fashion-MNIST (embedded default) or an ImageFolder root."""
from dataclasses import dataclass
from pathlib import Path

from vig.data import idx
from vig.data.arrays import ArrayImageDataset, TensorAugment
from vig.data.folder import CheckedImageFolder
from vig.errors import UsageError

FMNIST_NAMES = ("default", "fashion-mnist")


@dataclass
class DataConfig:
    """What the model expects (timm's resolve_data_config, plus our overrides)."""
    input_size: tuple      # (C, H, W)
    mean: tuple
    std: tuple
    interpolation: str = "bicubic"
    crop_pct: float = 0.875


def model_data_config(model, img_size=None, interpolation=None, crop_pct=None) -> DataConfig:
    from timm.data import resolve_data_config

    from vig.models.cfgs import model_in_chans
    cfg = resolve_data_config({}, model=model)
    c, h, w = cfg["input_size"]
    # the pretrained cfg describes the variant's default input; a model built for other channels (vig_fmnist on RGB
    # folders) reads what it was built for
    c = model_in_chans(model) or c
    if img_size:
        h = w = int(img_size)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if len(mean) == 1 and c > 1:  # one gray statistic, used for every channel (as broadcasting would)
        mean, std = mean * c, std * c
    return DataConfig((c, h, w), mean, std, interpolation or cfg["interpolation"],
                      crop_pct if crop_pct is not None else cfg["crop_pct"])


def check_interpolation(name, training):
    """timm's own lookup decides. 'random' (bilinear or bicubic per image) exists for training transforms only."""
    from timm.data.transforms import str_to_interp_mode
    if name == "random":
        if training:
            return
        raise UsageError("--interpolation: 'random' is for training only; choose one mode, e.g. bicubic")
    try:
        str_to_interp_mode(name)
    except (KeyError, TypeError):
        raise UsageError(f"--interpolation: unknown mode {name!r} (choose from bilinear, bicubic, nearest, box, "
                         f"hamming, lanczos{', random' if training else ''})") from None


def is_fmnist(data: str) -> bool:
    return data in FMNIST_NAMES


TRAIN_LAYOUT = "expected an ImageFolder root with train/ and val/, or 'default' / 'fashion-mnist'"


def check_data_folder(data, expected=None) -> Path:
    """--data PATH as a folder that exists (said before a checkpoint is read or a model built)."""
    root = Path(data)
    if not root.exists():
        raise UsageError(f"--data {root}: no such folder" + (f" ({expected})" if expected else ""))
    return root


def _timm_transform(dc: DataConfig, training: bool, cfg):
    from timm.data import create_transform
    if training:
        from vig.data.posterize_guard import guard_posterize
        return guard_posterize(create_transform(
            dc.input_size, is_training=True, hflip=cfg.hflip, auto_augment=cfg.auto_augment,
            interpolation=dc.interpolation, mean=dc.mean, std=dc.std, re_prob=cfg.reprob, re_mode="pixel",
            re_count=1))
    # a fixed mode for validation: timm's eval transform has no 'random' (its no-aug train transform uses bilinear)
    interpolation = "bilinear" if dc.interpolation == "random" else dc.interpolation
    return create_transform(dc.input_size, is_training=False, interpolation=interpolation, mean=dc.mean,
                            std=dc.std, crop_pct=dc.crop_pct)


def _fmnist(split, dc: DataConfig, cfg, training: bool, limit=None):
    images, labels = idx.load_split(split, cfg.data_dir)
    if limit:
        images, labels = images[:limit], labels[:limit]
    in_chans = dc.input_size[0]
    # the paper recipe's PIL transforms (RandAugment, RandomResizedCrop, ...) vs the cheap tensor path
    if cfg.recipe == "paper" or cfg.auto_augment:
        return ArrayImageDataset(images, labels, _timm_transform(dc, training, cfg), pil=True, in_chans=in_chans,
                                 classes=idx.CLASSES)
    aug = TensorAugment(dc.mean, dc.std, size=dc.input_size[1:], hflip=cfg.hflip if training else 0.0,
                        pad=cfg.crop_pad if training else 0)
    return ArrayImageDataset(images, labels, aug, pil=False, in_chans=in_chans, classes=idx.CLASSES)


def _limit(ds, n):
    """n images spread over every class: a fixed-seed draw, kept in file order. The first n files would hold only
    the first classes, since ImageFolder sorts by class."""
    if n and n < len(ds.samples):
        import random
        keep = sorted(random.Random(0).sample(range(len(ds.samples)), n))
        ds.samples = [ds.samples[i] for i in keep]
        ds.targets = [ds.targets[i] for i in keep]
    return ds


def build_train_val(cfg, dc: DataConfig):
    """(train dataset, val dataset, class names)."""
    if is_fmnist(cfg.data):
        return (_fmnist("train", dc, cfg, True, cfg.limit_train), _fmnist("test", dc, cfg, False, cfg.limit_val),
                list(idx.CLASSES))
    root = check_data_folder(cfg.data, TRAIN_LAYOUT)
    if not any(root.iterdir()):
        raise UsageError(f"--data {root} is empty (expected train/<class>/*.jpg and val/<class>/*.jpg)")
    train = _limit(CheckedImageFolder(root / "train", transform=_timm_transform(dc, True, cfg)), cfg.limit_train)
    val = _limit(CheckedImageFolder(root / "val", classes=train.classes, transform=_timm_transform(dc, False, cfg)),
                 cfg.limit_val)
    return train, val, train.classes


def build_eval(data, data_dir, dc: DataConfig, limit=None, classes=None):
    """The evaluation split: Fashion-MNIST's 10k test set, or PATH/val (or PATH/validation, or PATH itself if it holds
    class folders)."""
    from types import SimpleNamespace
    cfg = SimpleNamespace(data=data, data_dir=data_dir, recipe="default", auto_augment=None, hflip=0.0, crop_pad=0,
                          reprob=0.0)
    if is_fmnist(data):
        return _fmnist("test", dc, cfg, False, limit), list(idx.CLASSES)
    root = check_data_folder(data)
    split = next((root / n for n in ("val", "validation") if (root / n).is_dir()), root)
    if classes is None and (root / "train").is_dir():  # label indices must follow the training folder's classes
        if split == root:  # a train/ beside no val/ is a dataset root missing its split, not a class folder
            raise UsageError(f"{root} has no val/ folder (expected {root / 'val'}/<class>/*.jpg beside train/)")
        classes = sorted(e.name for e in (root / "train").iterdir() if e.is_dir() and not e.name.startswith("."))
    mode = "L" if dc.input_size[0] == 1 else "RGB"  # a one-channel checkpoint scored on colour images
    ds = _limit(CheckedImageFolder(split, classes=classes or None, transform=_timm_transform(dc, False, cfg),
                                   mode=mode), limit)
    return ds, ds.classes
