"""CLI verbs `vig train` and `vig eval`."""
import argparse
import sys
from pathlib import Path

from vig.errors import UsageError
from vig.models.checkpoint import RAW_WEIGHTS_HELP
from vig.models.model_kwargs import HELP as KWARGS_HELP
from vig.models.model_kwargs import METAVAR as KWARGS_METAVAR
from vig.models.model_kwargs import parse_model_kwargs
from vig.train.config import COMPILE_MODES
from vig.ranks import is_first_process

# (flag, type, help) for options that map 1:1 onto TrainConfig fields; all default to None so that only what the
# user typed overrides the recipe and the config file
TRAIN_OPTIONS = [
    ("--model", str, "timm model name (default: vig_fmnist for --data default/fashion-mnist)"),
    ("--data", str, "default | fashion-mnist | PATH (ImageFolder root with train/ and val/)"),
    ("--data-dir", str, "folder with the Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)"),
    ("--output", str, "run folder: checkpoints, metrics.csv, TensorBoard events, curves.png"),
    ("--recipe", str, "default | paper. default on Fashion-MNIST: 2 epochs, batch 64, no mixup or EMA (minutes on a "
                      "CPU); on a folder: 100 epochs, batch 128, base-lr 1e-3, warmup 5, RandAugment, mixup 0.8 / "
                      "cutmix 1.0, reprob 0.25, EMA 0.9998 with warmup. paper: the official ImageNet recipe, 300 "
                      "epochs. Each flag overrides its recipe value; the run's config.yaml lists every value used"),
    ("--epochs", int, "epochs the lr schedule spans (warmup + cosine to --min-lr); with --resume a changed value "
                       "is refused unless --reschedule is given"),
    ("--batch-size", int, "per process (total = this x processes; fixed for a run: --resume refuses another total)"),
    ("--img-size", int, None), ("--num-classes", int, "default: the number of classes in the data"),
    ("--pretrained", str, "weights to fine-tune from (official .pth or ours; ours also give --model and "
                          "--model-kwargs when those are not given); a head of another size is replaced"),
    ("--opt", str, "timm optimizer name (default adamw)"),
    ("--lr", float, "peak lr (default: base-lr x total batch / 512)"), ("--base-lr", float, None),
    ("--weight-decay", float, None), ("--layer-decay", float, "layer-wise lr decay for fine-tuning, e.g. 0.75"),
    ("--warmup-epochs", float, None),
    ("--warmup-lr", float, "scaled like the lr, as the official code does: x total batch / 512, or x lr / base-lr "
                           "with --lr"),
    ("--min-lr", float, "the cosine's end, scaled like --warmup-lr (the logged lr shows the value used)"),
    ("--clip-grad", float, None), ("--drop-path", float, "in [0, 1)"), ("--drop-rate", float, "in [0, 1)"),
    ("--smoothing", float, None), ("--mixup", float, None), ("--cutmix", float, None),
    ("--auto-augment", str, "e.g. rand-m9-mstd0.5-inc1"), ("--reprob", float, None), ("--hflip", float, None),
    ("--crop-pad", int, None), ("--interpolation", str, None), ("--crop-pct", float, None),
    ("--ema-decay", float, "0 turns EMA off"), ("--amp", str, "bf16 | fp16 | none (default: bf16 on GPU, none on CPU)"),
    ("--device", str, "cpu | cuda | cuda:N"), ("--seed", int, None), ("--workers", int, None),
    ("--threads", int, None), ("--ckpt-every-steps", int, "also save `last` every N steps"),
    ("--max-bad-steps", int, "abort after this many NaN/Inf losses in a row"),
    ("--limit-train", int, "use only N training images: the first N of Fashion-MNIST, or a fixed-seed sample "
                           "spread over the classes of an ImageFolder"),
    ("--limit-val", int, "use only N validation images (chosen as for --limit-train)"),
]
TRAIN_SWITCHES = [("--resume", "continue the run in --output from its last checkpoint (same total batch)"),
                  ("--reschedule", "with --resume and a new --epochs or lr setting (--lr, --base-lr, --warmup-*, "
                                   "--min-lr): rebuild the lr schedule with them, as timm does (a longer cosine "
                                   "rises again from where the old one ended)"),
                  ("--overwrite", "replace a run in --output"),
                  ("--deterministic", "bitwise-reproducible on CPU (and resumable to the same weights)"),
                  ("--no-progress", "no progress bar"), ("--no-tensorboard", "no TensorBoard event files")]


def add_commands(sub):
    p = sub.add_parser("train", help="train or fine-tune a model",
                       description="Train a model. `vig train --data default --output runs/fmnist` trains the small "
                                   "ViG on Fashion-MNIST in minutes on a CPU.")
    for flag, typ, help_ in TRAIN_OPTIONS:
        p.add_argument(flag, type=typ, default=None, help=help_)
    for flag, help_ in TRAIN_SWITCHES:
        p.add_argument(flag, action="store_true", help=help_)
    p.add_argument("--model-kwargs", nargs="+", default=None, metavar=KWARGS_METAVAR, help=KWARGS_HELP)
    p.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=None,
                   help="ramp the EMA's decay up to --ema-decay over the first steps, as timm's ModelEmaV3 can (on in "
                        "the default recipe on a folder, so a short fine-tune's EMA follows the model; off in paper)")
    add_compile_options(p, default_mode=None)
    p.add_argument("--config", type=str, default=None, help="YAML or JSON file of options (flags win)")
    p.set_defaults(func=train_command)

    e = sub.add_parser("eval", help="top-1/top-5 of a checkpoint on a dataset",
                       description="Top-1 / top-5 and loss of a checkpoint on a dataset's val split, with the "
                                   "transform the run validated with; writes them to --json.")
    e.add_argument("--model", default=None,
                   help="model name (default: the one a `vig train` or `vig convert` checkpoint records)")
    e.add_argument("--checkpoint", required=True, help="official .pth, our best.safetensors, or a last.pth")
    e.add_argument("--data", required=True, help="default | fashion-mnist | PATH (ImageFolder root or val folder)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--img-size", type=int, default=None)
    e.add_argument("--crop-pct", type=float, default=None)
    e.add_argument("--interpolation", default=None)
    e.add_argument("--amp", default=None, choices=["bf16", "fp16", "none"])
    e.add_argument("--device", default=None)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    e.add_argument("--json", default="eval.json", help="where to write the results (default ./eval.json)")
    e.add_argument("--raw-weights", action="store_true", help=RAW_WEIGHTS_HELP)
    e.add_argument("--model-kwargs", nargs="+", default=None, metavar=KWARGS_METAVAR,
                   help="the extra model arguments the checkpoint was trained with (default: those it records)")
    add_compile_options(e, default_mode="default")
    e.set_defaults(func=eval_command)


def add_compile_options(p, default_mode):
    # --no-compile too, so a run saved with compile: true can be resumed (or a config file overridden) without it
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (first steps slower while it compiles; ~1.8x faster training "
                        "steps for ViG-T on an H100)")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default=default_mode,
                   help="torch.compile mode, used with --compile (default: default)")


def cli_overrides(args) -> dict:
    values = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in TRAIN_OPTIONS}
    for flag in ("--resume", "--overwrite", "--deterministic"):  # --reschedule: per command, see train_command
        name = flag[2:]
        values[name] = True if getattr(args, name) else None
    values["compile"], values["compile_mode"] = args.compile, args.compile_mode
    values["ema_warmup"] = args.ema_warmup
    values["model_kwargs"] = parse_model_kwargs(args.model_kwargs) if args.model_kwargs else None
    values["progress"] = False if args.no_progress else None
    values["tensorboard"] = False if args.no_tensorboard else None
    return values


def train_command(args):
    from vig.train import config, engine, run_folder
    cli = cli_overrides(args)
    config_file = args.config
    if args.resume and args.output and (Path(args.output) / "config.yaml").is_file():
        if config_file:
            raise UsageError("--resume continues with the run's saved config.yaml; drop --config")
        config_file = str(Path(args.output) / "config.yaml")  # the saved run, with flags typed now on top
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --output and --overwrite deletes it: pass one of them")
    if args.reschedule and not args.resume:
        raise UsageError("--reschedule only applies with --resume (a new run's schedule already spans --epochs)")
    cfg = config.resolve(cli, config_file)
    if args.resume:
        cfg.resume, cfg.overwrite = True, False
    cfg.reschedule = args.reschedule  # for this command only: a saved `true` must not let a later --epochs slip by
    try:
        engine.run(cfg)
    except KeyboardInterrupt:
        # one line, like a UsageError: what survives and how to go on, instead of a traceback from deep in a step
        if is_first_process():  # under torchrun every rank gets the SIGINT; one line is enough
            print(f"vig train: interrupted; {run_folder.interrupted_note(cfg)}", file=sys.stderr)
        return 130  # the shell's code for a SIGINT death
    return 0


def eval_command(args):
    from vig.train.evaluate import run_eval
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    run_eval(args.model, args.checkpoint, args.data, args.data_dir, args.batch_size, args.img_size, args.crop_pct,
             args.interpolation, args.amp, args.device, args.limit, args.json, args.workers,
             parse_model_kwargs(args.model_kwargs) if args.model_kwargs else None,
             compile_mode=args.compile_mode if args.compile else None, raw_weights=args.raw_weights)
    return 0
