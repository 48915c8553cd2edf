"""`vig det train|eval` and `vig seg train|eval`. Unset options take the paper's preset (appendix C)."""
import json

from vig.atomic import atomic_write, check_output_file
from vig.errors import UsageError
from vig.models.model_kwargs import HELP as KWARGS_HELP
from vig.models.model_kwargs import METAVAR as KWARGS_METAVAR
from vig.models.model_kwargs import parse_model_kwargs


# the presets' values as --help states them (tests/downstream/test_startup_checks.py keeps them in step)
DET_HELP = {"lr": "1e-4", "weight_decay": "0.05", "batch_size": "16", "warmup_iters": "500"}
SEG_HELP = {"lr": "1.2e-4 for tiny backbones, 6e-5 for small / base", "weight_decay": "0.01", "batch_size": "16",
            "warmup_iters": "1500"}


def _common_train(p, preset_help):
    p.add_argument("--backbone", default=None, help="timm model name (vig_tiny, vig_h_small, ...; default: the one "
                                                     "a `vig train` --pretrained file records, else vig_tiny)")
    p.add_argument("--model-kwargs", nargs="+", default=None, metavar=KWARGS_METAVAR,
                   help=KWARGS_HELP + "; default: those a `vig train` --pretrained file records")
    p.add_argument("--pretrained", help="ImageNet checkpoint (ours or official) loaded strictly into the backbone")
    p.add_argument("--out", required=True, help="output folder: last.pth, metrics.csv, curves.png")
    p.add_argument("--resume", help="'auto' (OUT/last.pth if present) or a checkpoint path; the run goes on with the "
                                    "settings it saved, and options given now replace them")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate (default {preset_help['lr']})")
    p.add_argument("--weight-decay", type=float, help=f"default {preset_help['weight_decay']}")
    p.add_argument("--batch-size", type=int, help=f"total over all processes (default {preset_help['batch_size']})")
    p.add_argument("--layer-decay", type=float, help="layer-wise lr decay (1.0 = off)")
    p.add_argument("--drop-path", type=float, help="backbone stochastic depth (default: the model's)")
    p.add_argument("--warmup-iters", type=int, help=f"linear warmup (default {preset_help['warmup_iters']})")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute backbone blocks to save memory")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], help="default: bf16 on GPU, none on CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, help="data loader processes (default 2)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--log-every", type=int, help="iterations between log lines (default 20)")


def add_commands(subparsers):
    det = subparsers.add_parser("det", help="object detection / instance segmentation (Mask R-CNN, COCO format)")
    dsub = det.add_subparsers(dest="det_command", metavar="{train,eval}")
    dsub.required = True
    t = dsub.add_parser("train", help="train Mask R-CNN (paper preset: AdamW 1e-4, wd 0.05, 12 epochs, batch 16)")
    _common_train(t, DET_HELP)
    t.add_argument("--train-images", required=True, help="folder of the images the annotation file names")
    t.add_argument("--train-ann", required=True, help="COCO instances JSON (boxes; polygon or RLE masks)")
    t.add_argument("--val-images")
    t.add_argument("--val-ann")
    t.add_argument("--epochs", type=int, help="default 12")
    t.add_argument("--milestones", type=int, nargs="+", help="epochs where the lr drops x0.1 (default 8 11)")
    t.add_argument("--min-size", type=int, help="shorter image side after resizing (default 800)")
    t.add_argument("--max-size", type=int, help="cap on the longer side (default 1333)")
    t.add_argument("--max-iters", type=int, help="stop after this many iterations (smoke runs)")
    t.add_argument("--clip-grad", type=float)
    t.add_argument("--eval-every", type=int, help="epochs between evaluations (default 1)")
    t.add_argument("--save-every", type=int, metavar="ITERS",
                   help="also write last.pth every ITERS iterations inside an epoch (default: at each epoch's end)")
    t.add_argument("--fpn-channels", type=int, help="FPN width (default 256)")
    t.add_argument("--head-width", type=int, help="narrow box/mask heads of this width (CPU smoke runs only)")
    t.add_argument("--roi-batch", type=int, help="RoIs sampled per image for the box head (default 512)")
    t.set_defaults(func=det_train)
    e = dsub.add_parser("eval", help="COCO box and mask AP of a `vig det train` checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--images", required=True)
    e.add_argument("--ann", required=True)
    e.add_argument("--amp", choices=["none", "bf16", "fp16"], help="default: bf16 on GPU, none on CPU")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="write the metrics here")
    e.set_defaults(func=det_eval)

    seg = subparsers.add_parser("seg", help="semantic segmentation (UperNet, ADE20K format)")
    ssub = seg.add_subparsers(dest="seg_command", metavar="{train,eval}")
    ssub.required = True
    t = ssub.add_parser("train", help="train UperNet (paper preset: AdamW, wd 0.01, 160k iters, batch 16, 512 crops)")
    _common_train(t, SEG_HELP)
    t.add_argument("--train-images", required=True, help="folder of images (ADE/images/training)")
    t.add_argument("--train-masks", required=True,
                   help="folder of single-channel PNG label maps named as the images (ADE/annotations/training)")
    t.add_argument("--val-images")
    t.add_argument("--val-masks")
    t.add_argument("--num-classes", type=int, help="classes the head predicts (default 150, ADE20K's)")
    t.add_argument("--reduce-zero-label", choices=["yes", "no"],
                   help="ADE20K's convention: label 0 is ignored and 1..N become 0..N-1 (default yes; say no when 0 "
                        "is a class of your data)")
    t.add_argument("--iters", type=int, help="default 160000")
    t.add_argument("--crop", type=int, help="square training crop (default 512)")
    t.add_argument("--scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                   help="resize bound before cropping (default 2048 512)")
    t.add_argument("--head-channels", type=int, help="UperNet width (default 512)")
    t.add_argument("--eval-every", type=int, help="iterations between evaluations (default 16000)")
    t.add_argument("--save-every", type=int, help="iterations between checkpoints (default 4000)")
    t.set_defaults(func=seg_train)
    e = ssub.add_parser("eval", help="mIoU and pixel accuracy (sliding window) of a `vig seg train` checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--images", required=True)
    e.add_argument("--masks", required=True)
    e.add_argument("--stride", type=int, help="sliding-window stride, 1 to the crop size (default 2/3 of the crop)")
    e.add_argument("--amp", choices=["none", "bf16", "fp16"], help="default: bf16 on GPU, none on CPU")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="write the metrics here")
    e.set_defaults(func=seg_eval)


DEFAULT_BACKBONE = "vig_tiny"


# defaults of both tasks' run options that are not part of the paper's presets
RUN_DEFAULTS = dict(workers=2, seed=0, log_every=20)
# options of one invocation: never taken from a resumed run (the machine may differ)
NOT_RESUMED = ("resume", "overwrite", "device", "workers", "amp", "out_dir")


def _backbone_and_kwargs(args, saved=None):
    """--backbone and --model-kwargs; a resumed run's own (saved), else each defaults to what a `vig train`
    --pretrained file records (the classifier that run trained), so a run's own weights need neither flag; else
    vig_tiny with its defaults."""
    from vig.models.checkpoint import finetune_model_and_kwargs
    given = parse_model_kwargs(args.model_kwargs) if args.model_kwargs is not None else None
    if saved:
        return args.backbone or saved.get("backbone"), given if given is not None else saved.get("model_kwargs", {})
    backbone, kwargs = finetune_model_and_kwargs(args.pretrained, args.backbone, given)
    return backbone or DEFAULT_BACKBONE, kwargs if kwargs is not None else {}


def _saved_settings(args):
    """The settings a --resume checkpoint was trained with ({} for a fresh run, or --resume auto without last.pth:
    engine.check_run_dir then says what is wrong), so a resumed run is the same run: the presets' values must not
    come back for options it set (its lr, sizes, schedule)."""
    import os

    from vig.downstream.engine import load_training_checkpoint
    path = os.path.join(args.out, "last.pth") if args.resume == "auto" else args.resume
    if not path or not os.path.isfile(path):
        return {}
    config = load_training_checkpoint(path, mmap=True)["config"]  # the weights are read once, by the run itself
    return {k: v for k, v in config.items() if k not in NOT_RESUMED}


def _merge(args, preset, names, saved=None):
    """The preset, then a resumed run's saved settings, then the flags given now; says which saved ones a flag
    replaces."""
    cfg = {**RUN_DEFAULTS, **preset, **(saved or {})}
    replaced = []
    for n in names:
        v = getattr(args, n, None)
        if v is not None:
            if saved and n in saved and saved[n] != (list(v) if isinstance(v, tuple) else v):
                replaced.append(f"--{n.replace('_', '-')} {saved[n]} -> {v}")
            cfg[n] = v
    if saved and _main_process():
        print("resuming with the run's saved settings" + (f"; replaced now: {', '.join(replaced)}" if replaced
                                                           else ""))
    return cfg


# (low, high, high included) as vig train's config.RANGES; the _POSITIVE ones must be above 0, not equal to it
_POSITIVE = ("lr", "batch_size", "log_every", "eval_every", "save_every", "epochs", "iters", "max_iters", "min_size",
             "max_size", "fpn_channels", "head_width", "roi_batch", "crop", "head_channels", "num_classes",
             "clip_grad", "layer_decay")
RANGES = {**{name: (0, None, True) for name in _POSITIVE}, "weight_decay": (0, None, True),
          "warmup_iters": (0, None, True), "workers": (0, None, True), "layer_decay": (0, 1, True),
          "drop_path": (0, 1, False)}


def _check_values(cfg):
    """Each number checked before any data is read or a model built: out of range they failed deep inside torch
    (batch 0, a zero-width head), or ran quietly wrong (--epochs 0 trained nothing and named a last.pth never
    written)."""
    from vig.train.config import check_ranges
    check_ranges(cfg, RANGES, _POSITIVE)
    if cfg.get("min_size") and cfg.get("max_size") and cfg["max_size"] < cfg["min_size"]:
        raise UsageError(f"--max-size {cfg['max_size']} is below --min-size {cfg['min_size']}")
    if any(x < 1 for x in cfg.get("scale") or ()):
        raise UsageError(f"--scale sizes must be >= 1, got {list(cfg['scale'])}")


_COMMON = ["backbone", "pretrained", "resume", "overwrite", "lr", "weight_decay", "batch_size", "layer_decay",
           "drop_path", "warmup_iters", "grad_checkpointing", "amp", "device", "workers", "seed", "log_every"]


def _check_pair(a, b, na, nb):
    if bool(a) != bool(b):
        raise UsageError(f"{na} and {nb} go together")


def _need_pycocotools():
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise UsageError("detection needs pycocotools: pip install 'vig[downstream]' (or pip install pycocotools)") \
            from None


def det_train(args):
    _need_pycocotools()
    from vig.downstream.detection import DET_PRESET, train_detection
    from vig.train.run_folder import release_lock
    _check_pair(args.val_images, args.val_ann, "--val-images", "--val-ann")
    saved = _saved_settings(args)
    args.backbone, model_kwargs = _backbone_and_kwargs(args, saved)
    cfg = _merge(args, {**DET_PRESET, "eval_every": 1}, _COMMON + [
        "train_images", "train_ann", "val_images", "val_ann", "epochs", "min_size", "max_size", "max_iters",
        "clip_grad", "eval_every", "save_every", "fpn_channels", "head_width", "roi_batch", "milestones"], saved)
    cfg.update(task="det", out_dir=args.out, model_kwargs=model_kwargs)
    _check_values(cfg)
    try:
        res = train_detection(cfg)
    except KeyboardInterrupt:
        return _interrupted("det", args.out)
    finally:
        release_lock(args.out)
    if _main_process():
        print(f"trained {res['iters']} iterations; checkpoint {res['checkpoint']}")


def seg_train(args):
    from vig.downstream.segmentation import SEG_PRESET, preset_lr, train_segmentation
    from vig.train.run_folder import release_lock
    _check_pair(args.val_images, args.val_masks, "--val-images", "--val-masks")
    saved = _saved_settings(args)
    args.backbone, model_kwargs = _backbone_and_kwargs(args, saved)
    cfg = _merge(args, {**SEG_PRESET, "head_channels": 512, "eval_every": 16000, "save_every": 4000},
                 _COMMON + ["train_images", "train_masks", "val_images", "val_masks", "num_classes", "iters", "crop",
                            "scale", "head_channels", "eval_every", "save_every"], saved)
    if args.reduce_zero_label is not None:
        cfg["reduce_zero_label"] = args.reduce_zero_label == "yes"
    cfg.setdefault("lr", preset_lr(cfg["backbone"]))
    cfg.update(task="seg", out_dir=args.out, model_kwargs=model_kwargs)
    _check_values(cfg)
    try:
        res = train_segmentation(cfg)
    except KeyboardInterrupt:
        return _interrupted("seg", args.out)
    finally:
        release_lock(args.out)
    if _main_process():
        print(f"trained {res['iters']} iterations; checkpoint {res['checkpoint']}")


def det_eval(args):
    _need_pycocotools()
    _check_json(args.json)
    from vig.downstream import engine as E
    from vig.downstream.coco import CocoInstances
    from vig.downstream.detection import evaluate_detection, load_detector
    _, _, device = E.setup_distributed(args.device)
    args.amp = E.resolve_amp(args.amp, device)
    model, cfg = load_detector(args.checkpoint, device)
    ds = CocoInstances(args.images, args.ann, train=False, categories=cfg["categories"])
    metrics = evaluate_detection(model, ds, device, args.amp, workers=0)
    if metrics is not None:
        print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        _write_json(args.json, metrics)


def seg_eval(args):
    _check_json(args.json)
    if args.stride is not None and args.stride < 1:
        raise UsageError(f"--stride {args.stride}: must be at least 1")
    from vig.downstream import engine as E
    from vig.downstream.ade import SegFolder
    from vig.downstream.segmentation import evaluate_segmentation, load_segmentor
    _, _, device = E.setup_distributed(args.device)
    args.amp = E.resolve_amp(args.amp, device)
    model, cfg = load_segmentor(args.checkpoint, device)
    if args.stride is not None and args.stride > cfg["crop"]:  # windows would leave unpredicted gaps (NaN mIoU)
        raise UsageError(f"--stride {args.stride} is larger than the model's crop {cfg['crop']}: windows would "
                         f"leave gaps; use 1 to {cfg['crop']}")
    ds = SegFolder(args.images, args.masks, cfg["num_classes"], train=False,
                   reduce_zero_label=cfg.get("reduce_zero_label", False), scale=tuple(cfg["scale"]), crop=cfg["crop"])
    m = evaluate_segmentation(model, ds, device, cfg["crop"], args.stride, args.amp)
    if E.is_main():
        print(f"mIoU={m['mIoU']:.4f} aAcc={m['aAcc']:.4f}")
        _write_json(args.json, m)


def _interrupted(task, out):
    """One line, as vig train says it: what survives and how to go on (cli.main's generic line names neither)."""
    import os
    import sys
    if _main_process():
        last = os.path.join(out, "last.pth")
        hint = (f"{last} holds the last checkpoint; the same command with --resume auto continues from it"
                if os.path.exists(last) else "no checkpoint was written yet")
        print(f"vig {task} train: interrupted; {hint}", file=sys.stderr)
    return 130


def _main_process():
    from vig.downstream.engine import is_main
    return is_main()


def _check_json(path):
    """Before evaluating: a --json that cannot be written would otherwise fail only after the whole evaluation."""
    if path:
        check_output_file(path, "--json")


def _write_json(path, obj):
    if path:
        atomic_write(path, lambda f: json.dump(obj, f, indent=2), binary=False)
