"""`vig viz attn` (BiGLA implicit attention maps, paper Fig. 5) and `vig viz erf` (effective
receptive fields, paper Fig. 6). Every check runs before anything is written; outputs are renamed
into place only when all of them were rendered."""
import json
import re
import sys
from pathlib import Path

from vig.errors import UsageError

DEFAULT_OUT = "vig_viz"
MAX_SAVED_WEIGHTS = 1 << 20
SIZE_HELP = "input size in pixels (default: the size a `vig train` --checkpoint trained at, else 224)"


def add_commands(subparsers):
    viz = subparsers.add_parser("viz", help="visualise BiGLA attention maps and effective receptive fields")
    sub = viz.add_subparsers(dest="viz_command", metavar="WHAT")
    sub.required = True

    a = sub.add_parser("attn", help="forward / backward / merged implicit attention of one BiGLA layer (Fig. 5)")
    a.add_argument("image", help="an image file (resized and centre-cropped to --img-size)")
    a.add_argument("--model", default=None, help="model name, e.g. vig_tiny or vig_h_tiny (default: the one a "
                                                 "`vig train` / `vig convert` --checkpoint records)")
    a.add_argument("--checkpoint", help="weights file (official or ours), loaded strictly (without it: random "
                                        "weights from a fixed seed)")
    a.add_argument("--layer", default=None,
                   help="BiGLA layer: index over all layers (negative from the end) or STAGE.BLOCK for ViG-H "
                        "(default: the last layer)")
    a.add_argument("--head", type=int, default=0, help="attention head (default 0)")
    a.add_argument("--token", default=None,
                   help="query token X,Y (column,row on the layer's token grid; default: the grid centre) or "
                        "'all' (mean |weight| each key receives, averaged over all queries, plus the T x T "
                        f"matrices in the .npz where T x T <= {MAX_SAVED_WEIGHTS:,})")
    a.add_argument("--img-size", type=int, default=None, help=SIZE_HELP)
    a.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    a.set_defaults(func=run_attn)

    e = sub.add_parser("erf", help="effective receptive field of one or more models, side by side (Fig. 6)")
    e.add_argument("--model", default=None, help="model name (any timm model; ours included; default: the one a "
                                                 "`vig train` / `vig convert` --checkpoint records)")
    e.add_argument("--checkpoint", help="weights file for --model, loaded strictly (without it: seeded random "
                                        "weights)")
    e.add_argument("--images", required=True, help="folder of images (searched recursively, sorted by name)")
    e.add_argument("--compare", nargs="*", default=[], metavar="NAME[=CHECKPOINT] | CHECKPOINT",
                   help="more models for the same figure, e.g. deit_tiny_patch16_224=deit.pth resnet50 "
                        "runs/x/best.safetensors (a file that `vig train` / `vig convert` wrote names its model)")
    e.add_argument("--num-images", type=int, default=50, help="use the first N images (default 50)")
    e.add_argument("--img-size", type=int, default=None, help=SIZE_HELP)
    e.add_argument("--batch-size", type=int, default=4, help="images per forward/backward pass (default 4)")
    e.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    e.set_defaults(func=run_erf)


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")


def _recorded(args):
    """What a `vig train` / `vig convert` --checkpoint records (saved_run_info): read once for the size, the model
    (--model's default; official files record none) and its kwargs; {} without one."""
    from vig.models.checkpoint import saved_run_info
    return saved_run_info(args.checkpoint) if args.checkpoint else {}


def _resolve_size(args, saved):
    """--img-size, else the size a `vig train` --checkpoint trained at (as eval and predict take it), else 224."""
    if args.img_size is None:
        args.img_size = int(saved["img_size"]) if saved.get("img_size") else 224
    if args.img_size < 16:
        raise UsageError(f"--img-size must be at least 16 pixels, got {args.img_size}")


def _check_size_for(name, size):
    """A model that cannot take --img-size at all (a timm ViT at a size that is not whole patches) is refused before
    any model runs (viz erf --compare failed with a bare AssertionError after the first model's maps); plain ViG's
    stem reads such a size short of its edge, which is noted."""
    import timm

    from vig.bench.runner import unread_input
    from vig.models.cfgs import create_for_shapes, unread_edge
    if not timm.is_model(name):  # build_model names the unknown model
        return
    model = create_for_shapes(name)
    why = unread_input(name, [size], model)
    if why is None:
        return
    if unread_edge(model, size) is not None:  # plain ViG's conv stem
        print(f"note: {why}", file=sys.stderr)
    else:
        raise UsageError(f"--img-size: {why}")


def run_attn(args):
    from vig.models.checkpoint import model_for_checkpoint
    from vig.viz.attn_maps import attention_figure, attention_maps, parse_token
    from vig.viz.io import check_out_dir, load_image, npz_bytes, png_bytes, write_files
    from vig.viz.model import build_model

    saved = _recorded(args)
    _resolve_size(args, saved)
    out = check_out_dir(args.out)
    token = parse_token(args.token)
    rgb = load_image(args.image, args.img_size)
    args.model = model_for_checkpoint(args.model, args.checkpoint, saved)
    _check_size_for(args.model, args.img_size)
    model = build_model(args.model, args.checkpoint, args.img_size, saved=saved)
    result = attention_maps(model, rgb, args.layer, args.head, token)
    tok = "all" if result["token"] == "all" else "{}-{}".format(*result["token"])
    stem = f"attn_{_safe(args.model)}_{_safe(Path(args.image).stem)}_L{result['layer']}_H{args.head}_T{tok}"
    title = args.model if args.checkpoint else f"{args.model} (random weights)"
    png = png_bytes(attention_figure(rgb, result, title))
    arrays = {**_saved_weights(result["weights"]), **{f"map_{d}": m for d, m in result["maps"].items()}}
    paths = write_files(out, {f"{stem}.png": png, f"{stem}.npz": npz_bytes(**arrays)})
    for p in paths:
        print(p)
    return 0


def _saved_weights(weights):
    """The weight arrays small enough for the .npz: the full T x T matrices of an early ViG-H stage (T = 3136 at
    224 px) would be hundreds of MB. Those left out are named, since --help promises them."""
    kept = {f"w_{d}": w for d, w in weights.items() if w.size <= MAX_SAVED_WEIGHTS}
    left = [d for d, w in weights.items() if w.size > MAX_SAVED_WEIGHTS]
    if left:
        shape = "x".join(map(str, weights[left[0]].shape))
        print(f"note: the {shape} weight matrices ({', '.join(left)}) are over {MAX_SAVED_WEIGHTS:,} values and left "
              f"out of the .npz; the figure shows them block-averaged, the maps are saved", file=sys.stderr)
    return kept


def _model_specs(args, saved):
    from vig.models.checkpoint import model_for_checkpoint, saved_run_info
    specs = [(model_for_checkpoint(args.model, args.checkpoint, saved), args.checkpoint)]
    for item in args.compare:
        name, sep, ckpt = item.partition("=")
        if not sep and Path(name).is_file():  # a bare weights file
            name, ckpt = "", name
        if not name and not ckpt:
            raise UsageError(f"--compare: {item!r} names no model; give NAME, NAME=CHECKPOINT or CHECKPOINT")
        if not name:
            name = model_for_checkpoint(None, ckpt, saved_run_info(ckpt), flag=f"--compare NAME={ckpt}")
        specs.append((name, ckpt or None))
    labels, seen = [], set()
    for name, ckpt in specs:
        label = name if ckpt is None else f"{name}[{Path(ckpt).stem}]"
        if label in seen:
            raise UsageError(f"--compare: {label} is listed twice")
        seen.add(label)
        labels.append(label)
    return list(zip(labels, specs))


def _flags(spec_index):
    """The options that named spec `spec_index` of _model_specs: --model / --checkpoint, then --compare."""
    return ("--model", "--checkpoint") if spec_index == 0 else ("--compare", "--compare")


def run_erf(args):
    from tqdm import tqdm

    from vig.viz.erf import erf_figure, erf_map, scale_erf, summarise
    from vig.viz.io import check_out_dir, json_bytes, list_images, npy_bytes, png_bytes, write_files
    from vig.viz.model import build_model

    saved = _recorded(args)
    _resolve_size(args, saved)
    if args.num_images < 1 or args.batch_size < 1:
        raise UsageError("--num-images and --batch-size must be at least 1")
    out = check_out_dir(args.out)
    images = list_images(args.images, args.num_images)
    if len(images) < args.num_images:
        print(f"note: --num-images {args.num_images}, but {args.images} holds {len(images)} images; using "
              f"{len(images)}", file=sys.stderr)
    specs = _model_specs(args, saved)
    for _, (name, _) in specs:
        _check_size_for(name, args.img_size)
    # --checkpoint's record is read already; a --compare file's is read where its model is built
    models = {label: build_model(name, ckpt, args.img_size, flags=_flags(i), saved=saved if i == 0 else None)
              for i, (label, (name, ckpt)) in enumerate(specs)}
    raws, scaled, summary = {}, {}, {}
    with tqdm(total=len(models) * len(images), desc="erf", unit="img") as bar:
        for (label, (name, ckpt)), model in zip(specs, models.values()):
            bar.set_description(f"erf {label}")
            raws[label] = erf_map(model, images, args.img_size, args.batch_size, progress=bar)
            scaled[label] = scale_erf(raws[label])
            summary[label] = {"model": name, "checkpoint": ckpt, "random_weights": ckpt is None,
                              **summarise(raws[label])}
            if not raws[label].any():
                bar.write(f"warning: the ERF of {label} is zero everywhere (no positive centre feature?)")
    meta = {"img_size": args.img_size, "num_images": len(images), "images": args.images,
            "measure": "mean over images of sum_c |d(sum_ch relu(F[ch, h//2, w//2])) / d x_c|; "
                       "scaled = log10(1 + raw) / max; area squares centred on the ERF's centre of mass "
                       "(area_centre_px)",
            "models": summary}
    payloads = {}
    for label in models:
        raw_name, scaled_name = _erf_map_names(label)
        payloads[raw_name] = npy_bytes(raws[label])
        payloads[scaled_name] = npy_bytes(scaled[label])
    payloads["erf_compare.png"] = png_bytes(erf_figure(scaled, summary))
    payloads["erf_summary.json"] = json_bytes(meta)
    earlier = _erf_maps_of_earlier_run(out)
    for p in write_files(out, payloads):
        print(p)
    # maps of models the run this summary replaces compared: beside the new summary they would pass for this run's
    for name in sorted(earlier - set(payloads)):
        if (Path(out) / name).is_file():
            (Path(out) / name).unlink()
            print(f"removed {Path(out) / name} (the replaced summary's map; not among this run's models)",
                  file=sys.stderr)
    return 0


def _erf_maps_of_earlier_run(out):
    """The .npy names that the erf_summary.json in `out` lists (files an earlier run wrote), or none."""
    try:
        labels = json.loads((Path(out) / "erf_summary.json").read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for label in labels for name in _erf_map_names(str(label))}


def _erf_map_names(label):
    """The raw and the scaled map's file names of one compared model."""
    return f"erf_{_safe(label)}.npy", f"erf_{_safe(label)}_scaled.npy"
