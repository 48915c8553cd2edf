"""Training configuration: recipe defaults < config file (YAML/JSON) < command-line flags. Saved resolved in DIR."""
import dataclasses
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, Union, get_args, get_origin

import yaml

from vig.errors import UsageError

DEFAULT_MODEL = "vig_fmnist"
FMNIST_NAMES = ("default", "fashion-mnist")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's `mode` values


@dataclass
class TrainConfig:
    model: Optional[str] = None
    data: str = "default"              # default | fashion-mnist | PATH (ImageFolder root with train/ and val/)
    data_dir: Optional[str] = None     # where the Fashion-MNIST IDX files are (default: the Debian package's folder)
    output: Optional[str] = None
    recipe: str = "default"            # default | paper
    epochs: int = 4
    batch_size: int = 128              # per process, as in timm and the official code
    img_size: Optional[int] = None
    num_classes: Optional[int] = None  # default: the number of classes in the data
    pretrained: Optional[str] = None   # weights to fine-tune from (official .pth, ours .safetensors/.pth)
    model_kwargs: dict = field(default_factory=dict)  # extra timm.create_model arguments, e.g. {depth: 6}
    # optimisation
    opt: str = "adamw"
    base_lr: float = 1e-3              # lr = base_lr * total_batch / 512 unless `lr` is given
    lr: Optional[float] = None
    weight_decay: float = 0.05
    layer_decay: Optional[float] = None
    warmup_epochs: float = 0.5
    warmup_lr: float = 5e-7            # scaled like the lr, as the official code does
    min_lr: float = 5e-6               # scaled like the lr
    clip_grad: Optional[float] = 5.0
    # regularisation and augmentation
    drop_path: Optional[float] = None  # None: the variant's own default
    drop_rate: float = 0.0
    smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    auto_augment: Optional[str] = None
    reprob: float = 0.0
    hflip: float = 0.5
    crop_pad: int = 0                  # Fashion-MNIST fast path: random shifts by up to this many pixels
    interpolation: str = "bicubic"
    crop_pct: Optional[float] = None   # eval center-crop ratio (None: the model's pretrained cfg)
    ema_decay: float = 0.0             # 0 turns EMA off
    ema_warmup: bool = False           # the EMA's decay ramps up to ema_decay over the first steps (setup.build_ema)
    # precision and devices
    amp: Optional[str] = None          # bf16 | fp16 | none; None: bf16 on GPU, none on CPU
    device: Optional[str] = None       # cpu | cuda | cuda:N; None: cuda if available
    seed: int = 0
    deterministic: bool = False
    workers: Optional[int] = None      # DataLoader workers (None: 0 for in-memory Fashion-MNIST, else up to 8)
    threads: Optional[int] = None      # torch CPU threads (None: torch's default)
    compile: bool = False              # torch.compile the model for the training/eval steps (~1.8x on an H100)
    compile_mode: str = "default"      # torch.compile mode (used with compile only): one of COMPILE_MODES
    # run control
    resume: bool = False
    overwrite: bool = False
    reschedule: bool = False           # with resume: a changed `epochs` rebuilds the lr schedule (set per command)
    ckpt_every_steps: int = 0          # also write `last` every N optimizer steps (0: once per epoch)
    max_bad_steps: int = 5             # abort after this many non-finite losses in a row
    limit_train: Optional[int] = None  # use only N training images (quick runs, tests): see build._limit
    limit_val: Optional[int] = None
    progress: bool = True
    tensorboard: bool = True
    inject_nan_steps: list = field(default_factory=list)  # testing aid: these global steps get a NaN loss

    def to_dict(self):
        return dataclasses.asdict(self)


# Official per-variant values (shared/design/official_spec.md §0.1, §0.3): (base_lr, weight_decay, drop_path)
PAPER_VARIANTS = {
    "vig_tiny": (1e-3, 0.05, 0.0), "vig_small": (5e-4, 0.1, 0.2), "vig_base": (1e-3, 0.05, 0.5),
    "vig_h_tiny": (8e-4, 0.05, 0.2), "vig_h_small": (5e-4, 0.05, 0.3), "vig_h_base": (5e-4, 0.05, 0.6),
}


def recipe_defaults(recipe: str, model: str, data: str) -> dict:
    if recipe == "paper":
        lr, wd, dp = PAPER_VARIANTS.get(model, (1e-3, 0.05, 0.1))
        return dict(epochs=300, batch_size=128, base_lr=lr, weight_decay=wd, drop_path=dp, warmup_epochs=20,
                    warmup_lr=5e-7, min_lr=5e-6, clip_grad=5.0, smoothing=0.1, mixup=0.8, cutmix=1.0,
                    auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25, hflip=0.5, interpolation="bicubic",
                    crop_pct=0.875, ema_decay=0.9999)
    if recipe != "default":
        raise UsageError(f"unknown recipe {recipe!r}: choose 'paper' or 'default'")
    if data in FMNIST_NAMES:
        # tuned so `vig train --data default` reaches ~88% top-1 within minutes on a 2-core CPU:
        # lr 3e-3 at batch 64, no label smoothing (it slowed a 1-epoch proxy), no EMA (too few steps to help)
        return dict(epochs=2, batch_size=64, base_lr=0.024, weight_decay=0.05, warmup_epochs=0.2, min_lr=1e-5,
                    smoothing=0.0, hflip=0.5, crop_pad=0, ema_decay=0.0)
    return dict(epochs=100, batch_size=128, base_lr=1e-3, weight_decay=0.05, warmup_epochs=5, smoothing=0.1,
                hflip=0.5, auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25, mixup=0.8, cutmix=1.0,
                crop_pct=0.875, ema_decay=0.9998, ema_warmup=True)


def load_config_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UsageError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of option: value")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(k.replace("-", "_") for k in data) - known)
    if unknown:
        switches = [f"{k[3:]}: false" for k in unknown if k.startswith("no_") and k[3:] in known]
        hint = f" (a --no-X switch is the key X: {', '.join(switches)})" if switches else ""
        raise UsageError(f"config file {path}: unknown option(s) {', '.join(unknown)}{hint}")
    # what one command asks of its output folder: a run's saved config.yaml used to start another run must neither
    # resume nor wipe a run in the new folder (saved files before session 30 still hold these keys)
    dropped = [k for k in data if k.replace("-", "_") in PER_COMMAND and data[k]]
    if dropped:
        print(f"note: config file {path}: ignoring {', '.join(dropped)} (flags of one command; pass them as flags)",
              file=sys.stderr)
    return {k.replace("-", "_"): v for k, v in data.items() if k.replace("-", "_") not in PER_COMMAND}


def resolve(cli: dict, config_file=None) -> TrainConfig:
    """cli: only the options the user actually set (None-valued entries are ignored)."""
    cli = {k: v for k, v in cli.items() if v is not None}
    from_file = load_config_file(config_file) if config_file else {}
    if "ema_decay" in from_file and "ema_warmup" not in from_file:
        # a saved config.yaml lists every option, so one written before ema_warmup existed had a fixed decay: a run
        # it resumes or starts again keeps it (a file's own ema_decay never came with the folder recipe's ramp)
        from_file["ema_warmup"] = False
    merged = {**from_file, **cli}
    data = merged.get("data", "default")
    merged.update(_recorded_by_pretrained(merged))
    model = merged.get("model") or (DEFAULT_MODEL if data in FMNIST_NAMES else None)
    if model is None:
        from vig.data.build import TRAIN_LAYOUT, check_data_folder
        check_data_folder(data, TRAIN_LAYOUT)  # a mistyped path is the mistake to name, not the missing --model
        raise UsageError("--model is required when --data is a folder (e.g. --model vig_tiny), unless --pretrained "
                         "is a checkpoint that `vig train` or `vig convert` wrote (it records its model)")
    values = {**recipe_defaults(merged.get("recipe", "default"), model, data), **merged, "model": model}
    try:
        cfg = TrainConfig(**values)
    except TypeError as e:
        raise UsageError(f"bad configuration: {e}") from None
    check(cfg)
    return cfg


def _recorded_by_pretrained(merged: dict) -> dict:
    """--model and --model-kwargs left unset take what a --pretrained file of ours records (the run it continues),
    ahead of the data's default model; official releases record nothing."""
    from vig.models.checkpoint import finetune_model_and_kwargs
    model, kwargs = finetune_model_and_kwargs(merged.get("pretrained"), merged.get("model"),
                                              merged.get("model_kwargs"))
    out = {"model": model} if model and model != merged.get("model") else {}
    if kwargs and "model_kwargs" not in merged:
        out["model_kwargs"] = kwargs
    if out:
        shown = f" with {kwargs}" if "model_kwargs" in out else ""
        print(f"note: model {model}{shown}, as --pretrained {merged['pretrained']} records", file=sys.stderr)
    return out


def check(cfg: TrainConfig):
    """Every value up front (types too: config files can hold anything), so a typo is one line naming the option
    rather than a traceback after the data scan and model build."""
    check_types(cfg)
    if not cfg.output:
        raise UsageError("--output DIR is required")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.amp not in (None, "bf16", "fp16", "none"):
        raise UsageError(f"--amp must be bf16, fp16 or none, got {cfg.amp!r}")
    if cfg.compile_mode not in COMPILE_MODES:
        raise UsageError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {cfg.compile_mode!r}")
    check_ranges(vars(cfg))
    check_model_kwargs(cfg.model_kwargs)
    if cfg.mixup > 0 or cfg.cutmix > 0:
        if cfg.batch_size % 2:
            raise UsageError(f"mixup/cutmix need an even batch size, got {cfg.batch_size}")
    check_optimizer(cfg.opt)
    if cfg.auto_augment:
        check_auto_augment(cfg.auto_augment)
    from vig.data.build import check_interpolation
    check_interpolation(cfg.interpolation, training=True)


# field: (low, high, high included); None-valued fields mean "the default" and are not checked. Written so that NaN
# fails too (every comparison with NaN is false).
RANGES = {
    "img_size": (1, None, True), "num_classes": (1, None, True), "lr": (0, None, True),
    "base_lr": (0, None, True), "weight_decay": (0, None, True), "layer_decay": (0, 1, True),
    "warmup_epochs": (0, None, True), "warmup_lr": (0, None, True), "min_lr": (0, None, True),
    "clip_grad": (0, None, True), "drop_path": (0, 1, False), "drop_rate": (0, 1, False),
    "smoothing": (0, 1, False), "mixup": (0, None, True), "cutmix": (0, None, True), "reprob": (0, 1, True),
    "hflip": (0, 1, True), "crop_pad": (0, None, True), "crop_pct": (0, 1, True), "ema_decay": (0, 1, False),
    "workers": (0, None, True), "threads": (1, None, True), "ckpt_every_steps": (0, None, True),
    "max_bad_steps": (1, None, True), "limit_train": (1, None, True), "limit_val": (1, None, True),
}
# these must be above their low end, not equal to it (a zero lr trains nothing; a crop of 0 px is no image)
EXCLUSIVE_LOW = ("lr", "base_lr", "layer_decay", "crop_pct")


def check_ranges(values: dict, ranges=RANGES, exclusive_low=EXCLUSIVE_LOW):
    """Each option of `ranges` that `values` holds (not None) within its range; also det / seg training's table."""
    for name, (low, high, high_included) in ranges.items():
        value = values.get(name)
        if value is None:
            continue
        above = value > low if name in exclusive_low else value >= low
        below = high is None or (value <= high if high_included else value < high)
        if not (above and below):
            raise UsageError(f"--{name.replace('_', '-')} must be "
                             f"{_range_text(name in exclusive_low, low, high, high_included)}, got {value}")


def _range_text(exclusive_low, low, high, high_included):
    if high is None:
        return f"{'>' if exclusive_low else '>='} {low}"
    return f"in {'(' if exclusive_low else '['}{low}, {high}{']' if high_included else ')'}"


# model arguments a run sets itself: passed through --model-kwargs they would be silently overridden (or override
# what the data needs), so each is refused with the flag that sets it
RUN_SET_KWARGS = {"num_classes": "the class count comes from the data; use --num-classes",
                  "in_chans": "the channel count comes from the data",
                  "img_size": "use --img-size", "drop_path_rate": "use --drop-path", "drop_rate": "use --drop-rate"}


def check_model_kwargs(kwargs: dict):
    for key, why in RUN_SET_KWARGS.items():
        if key in kwargs:
            raise UsageError(f"--model-kwargs {key}={kwargs[key]}: {why}")


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              dict: "a mapping of argument: value (e.g. {depth: 6})", list: "a list"}


def check_types(cfg: TrainConfig):
    """Each value must fit its field's type; numbers written as strings are converted (YAML 1.1 reads 1e-3, with no
    dot, as a string)."""
    for f in fields(cfg):
        value, typ = getattr(cfg, f.name), f.type
        if get_origin(typ) is Union:  # Optional[X]
            if value is None:
                continue
            typ = next(t for t in get_args(typ) if t is not type(None))
        converted = _convert(value, typ)
        if converted is None:
            raise UsageError(f"--{f.name.replace('_', '-')}: expected {TYPE_NAMES[typ]}, got {value!r}")
        setattr(cfg, f.name, converted)


def _convert(value, typ):
    """value as typ, or None if it is not one (bool is an int to Python, never to us; an int is a fine float)."""
    if typ in (int, float) and not isinstance(value, bool):
        if isinstance(value, float) and typ is int:
            return int(value) if value.is_integer() else None
        if isinstance(value, int):
            return value
        try:
            return typ(value) if isinstance(value, (float, str)) else None
        except ValueError:
            return None
    return value if isinstance(value, typ) else None


def check_optimizer(name):
    from timm.optim import list_optimizers
    names = list_optimizers()
    # timm reads `lookahead_adamw` as adamw wrapped in Lookahead, and silently drops any other prefix
    *prefix, base = name.lower().split("_")
    if base not in names or prefix not in ([], ["lookahead"]):
        import difflib
        close = difflib.get_close_matches(base, names, n=5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"--opt: unknown optimizer {name!r} ({hint}choose from {', '.join(names)}, optionally "
                         f"prefixed lookahead_)")


def check_auto_augment(policy):
    """Parsed as timm's create_transform does (rand-..., augmix-..., or an AutoAugment policy name)."""
    from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
    build = (rand_augment_transform if policy.startswith("rand") else
             augment_and_mix_transform if policy.startswith("augmix") else auto_augment_transform)
    try:
        build(policy, {})
    except (AssertionError, ValueError, KeyError, IndexError) as e:
        raise UsageError(f"--auto-augment: unknown policy {policy!r} ({e}; e.g. rand-m9-mstd0.5-inc1, "
                         f"augmix-m5-w4-d2, original, v0, 3a)") from None


PATH_FIELDS = ("data", "data_dir", "output", "pretrained")
PER_COMMAND = ("resume", "overwrite", "reschedule")  # flags of one command, never saved nor read from a file


def stored_path(value):
    """A path option as records keep it: absolute where it exists (`default` / `fashion-mnist` are names)."""
    return str(Path(value).resolve()) if value and Path(value).exists() else value


def save(cfg: TrainConfig, path, as_run=None):
    """The resolved config; paths that exist are stored absolute, so `--resume` works from any directory.

    as_run: what the run worked out at start from these options and the machine (peak lr, total batch, the
    variant's drop path, amp, ...), written first as YAML comments: a record to read, never read back (a saved
    config.yaml that starts a run elsewhere must leave them to that run)."""
    from vig.train.checkpointing import atomic_write_text
    values = {k: v for k, v in cfg.to_dict().items() if k not in PER_COMMAND}
    if not values.get("inject_nan_steps"):  # a test aid: a user's config.yaml lists it only when a test set it
        values.pop("inject_nan_steps", None)
    for name in PATH_FIELDS:
        values[name] = stored_path(values.get(name))
    head = ""
    if as_run:
        lines = yaml.safe_dump(as_run, sort_keys=False, default_flow_style=None).splitlines()
        head = "# as run (worked out at start; comments, not read back):\n" + "".join(f"#   {line}\n" for line in lines)
    atomic_write_text(path, head + yaml.safe_dump(values, sort_keys=False))
