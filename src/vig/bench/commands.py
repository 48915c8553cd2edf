"""`vig bench`: throughput, memory and FLOPs of timm models (ours and timm's), as JSON and PNG."""
import os
import sys

from vig.atomic import writable_folder
from vig.errors import UsageError

# 10 steps per timed block: each block starts on an idle GPU (its timer synchronises), so its first step's host
# time is not hidden behind the GPU. With 3 steps that penalised the model with more host time per step:
# H200, CUDA graphs, 1024², bs 16, ViG-T 2,029 img/s with 3-step blocks against 2,148 with 10, DeiT-T 1,435
# against 1,428 (benchmarks/NOTES_bigla.md, session 12); max_seconds_per_point still caps slow points.
GPU_DEFAULTS = {"img_sizes": [224], "batch_sizes": [256], "dtype": "bf16", "warmup": 3, "repeats": 7,
                "iters": 10, "max_seconds_per_point": 10.0}
# Small enough that a laptop finishes a tiny model in seconds.
CPU_DEFAULTS = {"img_sizes": [224], "batch_sizes": [8], "dtype": "fp32", "warmup": 1, "repeats": 3,
                "iters": 1, "max_seconds_per_point": 20.0}


def add_commands(subparsers):
    p = subparsers.add_parser(
        "bench", help="measure img/s, peak memory and FLOPs of models",
        description="Benchmark inference (and with --train a full training step: forward, backward, AdamW) "
                    "of registered timm models. Synchronised timers, warmup, median of repeats; OOM is "
                    "recorded per point. Defaults are small on CPU (224px, batch 8, fp32).")
    p.add_argument("--models", nargs="+", default=["vig_tiny", "deit_tiny_patch16_224"], metavar="NAME")
    p.add_argument("--img-sizes", nargs="+", type=int, metavar="PX")
    p.add_argument("--batch-sizes", nargs="+", type=int, metavar="N")
    p.add_argument("--scale-batch", action="store_true",
                   help="shrink each batch by (224/px)^2 above 224 px (same pixels per step)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"],
                   help="fp32, or bf16/fp16 autocast (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--train", action="store_true", help="also time a training step")
    p.add_argument("--train-only", action="store_true", help="time only the training step")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                   help="torch.compile mode (implies --compile); reduce-overhead adds CUDA graphs, which "
                        "removes the host launch cost that bounds small models' eager steps")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    p.add_argument("--threads", type=int, help="CPU intra-op threads (default: torch's; 1 is fastest on a busy CPU)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--iters", type=int, help="steps per timed block")
    p.add_argument("--max-seconds-per-point", type=float)
    p.add_argument("--time-limit", type=float, metavar="S", help="skip (and record) points after S seconds")
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", default="vig_bench", metavar="DIR", help="output folder (default ./vig_bench)")
    p.add_argument("--name", default=None, help="file stem (default bench_<device>_<dtype>)")
    p.set_defaults(func=run_bench)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PARTIAL = ".partial"  # beside the JSON while points are measured: what an interrupted run had finished


def _partial_writer(cfg, json_path):
    """on_point for runner.run: the points so far into JSON_PATH.partial; the run's environment is read once."""
    import dataclasses

    import torch
    from vig.bench import runner
    head = {"schema": "vig-bench/1", "env": runner.environment(torch.device(cfg.device)),
            "config": dataclasses.asdict(cfg), "complete": False}
    return lambda points: runner.write_json({**head, "results": points}, json_path + PARTIAL)


def config_from_args(args):
    import torch
    from vig.bench.runner import BenchConfig
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    defaults = CPU_DEFAULTS if device == "cpu" else GPU_DEFAULTS

    def pick(key):
        value = getattr(args, key)
        return defaults[key] if value is None else value

    for key in ("time_limit", "max_seconds_per_point"):  # 0 or less would skip every point without a word
        if getattr(args, key) is not None and getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be > 0 seconds, got {getattr(args, key)}")
    if args.name is not None and (not args.name or os.path.basename(args.name) != args.name):
        raise UsageError(f"--name is a file stem inside --out, without folders, got {args.name!r}")
    for key in ("warmup", "repeats", "iters"):
        if getattr(args, key) is not None and getattr(args, key) < (0 if key == "warmup" else 1):
            raise UsageError(f"--{key} must be {'>= 0' if key == 'warmup' else '>= 1'}, got {getattr(args, key)}")
    modes = ("train",) if args.train_only else (("infer", "train") if args.train else ("infer",))
    return BenchConfig(models=list(args.models), img_sizes=pick("img_sizes"), batch_sizes=pick("batch_sizes"),
                       dtype=pick("dtype"), modes=modes, compile=args.compile or args.compile_mode is not None,
                       compile_mode=args.compile_mode or "default", channels_last=args.channels_last,
                       scale_batch=args.scale_batch, warmup=pick("warmup"), repeats=pick("repeats"),
                       iters=pick("iters"), max_seconds_per_point=pick("max_seconds_per_point"),
                       time_limit_s=args.time_limit, count_flops=not args.no_flops, device=device, suite="cli",
                       threads=args.threads)


def run_bench(args):
    from vig.bench import plots, runner
    cfg = config_from_args(args)
    runner.check_config(cfg)
    writable_folder(args.out, "--out")
    stem = args.name or f"bench_{cfg.device}_{cfg.dtype}"
    json_path = os.path.join(args.out, f"{stem}.json")
    try:
        data = runner.run(cfg, on_point=_partial_writer(cfg, json_path))
    except KeyboardInterrupt:
        if os.path.exists(json_path + PARTIAL):
            print(f"vig bench: interrupted; the points measured so far are in {json_path + PARTIAL}", file=sys.stderr)
        raise
    written = [runner.write_json(data, json_path)]
    if os.path.exists(json_path + PARTIAL):
        os.unlink(json_path + PARTIAL)
    if not args.no_plots:
        written += plots.plot_all(data, args.out, stem)
    for path in written:
        print(f"wrote {path}")
    for path in plots.stale_plots(args.out, stem, written):
        os.unlink(path)
        print(f"removed {path} (an earlier run's figure, not redrawn by this one)")
    errors = [p for p in data["results"] if p.get("status") == "error"]
    return 1 if errors else 0
