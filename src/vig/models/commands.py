"""`vig info`, `vig convert` and `vig predict`: inspect a model, convert official weights, classify one image."""
import difflib
import functools
import hashlib
import json
import os
import sys

import torch

from vig.atomic import check_output_file
from vig.errors import UsageError
from vig.models.checkpoint import RAW_WEIGHTS_HELP


def add_commands(subparsers):
    p = subparsers.add_parser("info", help="parameters, GMACs, feature maps and pretrained config of a model")
    p.add_argument("model", help="model name (vig_tiny ... vig_h_base, or any timm model)")
    p.add_argument("--img-size", type=int, default=None, help="resolution for GMACs (default: the model's)")
    p.add_argument("--features", action="store_true", help="also list features_only maps (channels, reduction)")
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser("convert", help="convert an official .pth checkpoint to .safetensors (strict)")
    p.add_argument("source", help="official checkpoint (.pth/.pt/.safetensors)")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--model", default=None,
                   help="model the checkpoint is for, e.g. vig_tiny (default: the one a `vig train` checkpoint "
                        "records)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--raw-weights", action="store_true", help=RAW_WEIGHTS_HELP)
    p.set_defaults(func=cmd_convert)

    p = subparsers.add_parser("predict", help="classify one image and print the top-k classes")
    p.add_argument("image", help="image file (any format PIL reads)")
    p.add_argument("--model", default=None,
                   help="model name, e.g. vig_tiny (default: the one a `vig train` / `vig convert` --checkpoint "
                        "records)")
    p.add_argument("--checkpoint", default=None, help="weights (.pth/.safetensors); without it weights are random")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the checkpoint's head (default: model's)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--raw-weights", action="store_true", help=RAW_WEIGHTS_HELP)
    p.add_argument("--img-size", type=int, default=None,
                   help="input resolution (default: the training size stored in --checkpoint, else the model's)")
    p.set_defaults(func=cmd_predict)


def check_model_name(name):
    """Raise a UsageError with close suggestions when `name` is not a registered timm model."""
    import timm
    import vig.models  # noqa: F401  registers the vig_* models with timm
    if timm.is_model(name.split(".")[0]):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models('vig*')"
    raise UsageError(f"unknown model '{name}'{hint}")


def create(name, meta=False, **kwargs):
    """timm.create_model with name checks; meta=True builds shapes only (no init cost) when the builder allows it."""
    import timm
    check_model_name(name)
    from vig.models.cfgs import create_for_shapes
    try:
        return create_for_shapes(name, **kwargs) if meta else timm.create_model(name, **kwargs)
    except (ValueError, AssertionError) as e:
        raise UsageError(f"cannot create {name}: {e}") from None


def _default_size(model):
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))
    return size[1], size[2]


def count_macs(model, img_size):
    """MACs of one image forward (FLOPs/2) and per-op FLOPs, as torch's FlopCounterMode sees them."""
    from torch.utils.flop_counter import FlopCounterMode

    from vig.models.cfgs import model_in_chans
    x = torch.zeros(1, model_in_chans(model), *img_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x)
    except ValueError as e:
        raise UsageError(f"{e}") from None
    by_op = {str(op).split(".")[-2] if str(op).count(".") >= 2 else str(op): n
             for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops() / 2, by_op


def format_cfg(cfg):
    keys = ("tag", "input_size", "crop_pct", "interpolation", "mean", "std", "num_classes", "first_conv",
            "classifier", "file", "hf_hub_id", "url")
    items = []
    for k in keys:
        v = cfg.get(k)
        if v in (None, "", ()):
            continue
        if isinstance(v, tuple) and v and isinstance(v[0], float):
            v = "(" + ", ".join(f"{x:.3f}" for x in v) + ")"
        items.append(f"{k}={v}")
    return ", ".join(items)


def create_at_size(name, img_size, default=None, meta=False, **kwargs):
    """The model built for `img_size` (models with a fixed-size pos_embed need it at creation), plus its input size."""
    model = default if default is not None else create(name, meta=meta, **kwargs)
    if img_size is None or (img_size, img_size) == _default_size(model):
        return model, _default_size(model)
    if img_size < 1:
        raise UsageError(f"--img-size must be positive, got {img_size}")
    try:
        return create(name, meta=meta, img_size=img_size, **kwargs), (img_size, img_size)
    except TypeError:  # this model takes no img_size argument: it runs at any input size as built
        return model, (img_size, img_size)


def cmd_info(args):
    name = args.model
    # Shapes are all `info` needs, so models are built on the meta device: no init, no real arithmetic.
    probe = create(name, meta=True)
    model, size = create_at_size(name, args.img_size, default=probe, meta=True)
    # Params as released (default size): a resized model differs only by its pos_embed length.
    params = sum(p.numel() for p in probe.parameters())
    resized = sum(p.numel() for p in model.parameters())
    print(f"model: {name}")
    print(f"params: {params:,} ({params / 1e6:.2f} M)" +
          (f"; {resized:,} when built for {size[0]}x{size[1]}" if resized != params else ""))
    try:
        macs, by_op = count_macs(model, size)
    except (NotImplementedError, RuntimeError):
        if next(model.parameters()).device.type != "meta":
            raise
        # some ops have no meta kernel (or read values): count on a real CPU model instead
        macs, by_op = count_macs(create_at_size(name, args.img_size)[0], size)
    ops = ", ".join(f"{op} {n / 2e9:.3f}" for op, n in sorted(by_op.items(), key=lambda kv: -kv[1]))
    print(f"GMACs @ {size[0]}x{size[1]}: {macs / 1e9:.3f}  (FLOPs/2 by torch FlopCounterMode; by op: {ops or 'none'})")
    if any("bigla" in op for op in by_op):  # other models (DeiT, ResNet) have no recurrence to explain
        print("  the BiGLA recurrence is counted by its registered formula (vig/ops/bigla/flops.py)")
    from vig.models.cfgs import unread_edge
    edges = [e for e in (unread_edge(model, side) for side in size) if e and e[0]]
    if edges:  # the same GMACs as the size below it: vig bench refuses such a size, info says why
        print(f"  note: the stem leaves {max(edges)[0]} px of this input unread (its stride is {edges[0][1]}); "
              f"use multiples of {edges[0][1]}")
    cfg = getattr(probe, "pretrained_cfg", None) or {}
    print(f"pretrained cfg: {format_cfg(cfg) or 'none'}")
    if args.features:
        fmodel = create(name, meta=True, features_only=True)
        info = fmodel.feature_info
        print("features (features_only=True):")
        for module, ch, red in zip(info.module_name(), info.channels(), info.reduction()):
            print(f"  {module}: channels {ch}, reduction {red}")
    return 0


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cmd_convert(args):
    from vig.models.checkpoint import (checkpoint_build_kwargs, load_checkpoint_file, load_pretrained,
                                       model_for_checkpoint, recorded_model_kwargs, save_safetensors_atomic,
                                       saved_run_info)
    if not args.output.endswith(".safetensors"):
        raise UsageError(f"output must end with .safetensors, got {args.output}")
    if os.path.abspath(args.output) == os.path.abspath(args.source):
        raise UsageError("output and source are the same file")
    check_output_file(args.output, "output")
    if os.path.exists(args.output) and not args.overwrite:
        raise UsageError(f"output {args.output} exists; pass --overwrite to replace it")
    # a fine-tuned checkpoint converts with its own head and input channels
    raw = load_checkpoint_file(args.source, args.raw_weights)
    saved = saved_run_info(args.source)  # a `vig train` checkpoint's model, class names and transform travel along
    name = model_for_checkpoint(args.model, args.source, saved)
    recorded = recorded_model_kwargs(saved, name)
    # at the size it trained at: a model built for 224 would take a 48 px run's pos_embed resampled, not as saved
    trained_at = int(saved["img_size"]) if saved.get("img_size") else None
    model, _ = create_at_size(name, trained_at, **{**checkpoint_build_kwargs(raw, name), **recorded})
    load_pretrained(model, args.source, strict=True, model_name=name, raw=raw)
    sd = model.state_dict()
    digest = sha256_of(args.source)
    meta = {"format": "pt", "model": name, "source_file": os.path.basename(args.source),
            "source_sha256": digest}
    if recorded:
        meta["model_kwargs"] = json.dumps(recorded)
    if saved.get("classes"):
        meta["classes"] = json.dumps(saved["classes"])
    for key in ("img_size", "crop_pct", "interpolation"):  # eval and predict reuse training's transform
        if saved.get(key) is not None:
            meta[key] = str(saved[key])
    save_safetensors_atomic(sd, args.output, metadata=meta)
    params = sum(v.numel() for v in sd.values())
    print(f"converted {args.source} -> {args.output}")
    print(f"model {name}: {len(sd)} tensors, {params:,} values, strict load OK")
    print(f"source sha256 {digest}")
    return 0


PIL_MODES = {1: "L", 3: "RGB"}  # input channels -> the PIL mode that gives them


def load_image(path, in_chans=3):
    """The image in the model's channels: grayscale ("L") for 1-channel models such as vig_fmnist."""
    from PIL import Image, UnidentifiedImageError
    if in_chans not in PIL_MODES:
        raise UsageError(f"cannot feed an image file to a model with {in_chans} input channels (1 or 3 only)")
    if not os.path.isfile(path):
        raise UsageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.convert(PIL_MODES[in_chans])
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UsageError(f"cannot read image {path}: {e}") from None


def class_label(index, trained, head_rows):
    """Training labels are indices into the stored class names, also when the head has more rows than the data
    had classes (`vig train --num-classes`); the rows past them were never a target."""
    if trained and len(trained) <= head_rows:
        return trained[index] if index < len(trained) else f"class {index} (no training class)"
    return _imagenet_names().index_to_description(index) if head_rows == 1000 else f"class {index}"


@functools.lru_cache(maxsize=1)
def _imagenet_names():
    import timm.data
    return timm.data.ImageNetInfo()


def build_for_checkpoint(model_name, checkpoint, raw_weights, img_size, flag="--model", adjust_kwargs=None):
    """The model `vig predict` and `vig export` run, built and loaded alike: a fine-tuned checkpoint brings its recorded
    model, head size, input channels and model arguments (adjust_kwargs(kwargs) may check or change them before the
    build), and its training size unless img_size is given; without a checkpoint the weights are random. Returns
    (saved run info, name, model, input size)."""
    from vig.models.checkpoint import (checkpoint_build_kwargs, load_checkpoint_file, load_pretrained,
                                       model_for_checkpoint, recorded_model_kwargs, saved_run_info)
    saved = saved_run_info(checkpoint) if checkpoint else {}
    name = model_for_checkpoint(model_name, checkpoint, saved, flag=flag)
    check_model_name(name)
    raw = load_checkpoint_file(checkpoint, raw_weights) if checkpoint else None
    kwargs = {**checkpoint_build_kwargs(raw, name), **recorded_model_kwargs(saved, name)} if checkpoint else {}
    if adjust_kwargs is not None:
        adjust_kwargs(kwargs)
    if img_size is None and saved.get("img_size"):  # as `vig eval`: a run trained at 64 px is not fed 224
        img_size = int(saved["img_size"])
    model, size = create_at_size(name, img_size, **kwargs)
    if checkpoint:
        load_pretrained(model, checkpoint, strict=True, model_name=name, raw=raw)
    return saved, name, model, size


def cmd_predict(args):
    import timm.data
    from vig.models.cfgs import model_in_chans
    from vig.models.checkpoint import require_head
    if args.topk < 1:
        raise UsageError(f"--topk must be at least 1, got {args.topk}")
    # before the model is built and the checkpoint read: a folder is a likely mistake, not a missing file
    if os.path.isdir(args.image):
        raise UsageError(f"{args.image} is a folder; predict takes one image file")
    if not os.path.isfile(args.image):
        raise UsageError(f"image not found: {args.image}")

    def head_kwargs(kwargs):  # --num-classes still wins over the checkpoint's head size
        if args.num_classes is not None and args.num_classes < 1:
            raise UsageError(f"--num-classes must be at least 1, got {args.num_classes} (predict needs a classifier "
                             "head)")
        require_head(kwargs, args.checkpoint, "it cannot classify")
        if args.num_classes is not None:
            kwargs["num_classes"] = args.num_classes

    saved, name, model, size = build_for_checkpoint(args.model, args.checkpoint, args.raw_weights, args.img_size,
                                                    adjust_kwargs=head_kwargs)
    in_chans = model_in_chans(model)  # the image is read in the model's channels: "L" for vig_fmnist
    image = load_image(args.image, in_chans)
    if not args.checkpoint:
        print(f"warning: no --checkpoint given, {name} has random weights", file=sys.stderr)
    model.eval()
    # the crop and resampling training validated with, where the checkpoint stored them
    stored = {k: saved[k] for k in ("crop_pct", "interpolation") if saved.get(k) is not None}
    cfg = timm.data.resolve_data_config(args={"input_size": (in_chans, *size), **stored}, model=model)
    x = timm.data.create_transform(**cfg, is_training=False)(image).unsqueeze(0)
    try:
        with torch.no_grad():
            probs = model(x).softmax(-1)[0]
    except ValueError as e:
        raise UsageError(str(e)) from None
    k = min(args.topk, probs.numel())
    top = probs.topk(k)
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        print(f"{p:7.2%}  {i:4d}  {class_label(i, saved.get('classes'), probs.numel())}")
    return 0
