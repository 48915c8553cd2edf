"""The benchmark loop shared by `vig bench` and benchmarks/bench_models.py: build each timm model once per
resolution, count its FLOPs, time inference and training steps for each batch size, record everything
(including OOM and time-limit skips) with the environment that produced it."""
import dataclasses
import difflib
import importlib.metadata
import json
import os
import platform
import time

import torch

from vig.atomic import atomic_write
from vig.bench import flops, timing
from vig.bench.provenance import code_identity
from vig.errors import UsageError


@dataclasses.dataclass
class BenchConfig:
    models: list
    img_sizes: list
    batch_sizes: list
    dtype: str = "bf16"
    modes: tuple = ("infer", "train")
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's mode, used when compile is set
    channels_last: bool = False
    scale_batch: bool = False      # shrink batch by (224/img)^2 so large images fit: same pixels per step
    warmup: int = 3
    repeats: int = 7
    iters: int = 10                # steps per timed block (see bench.commands.GPU_DEFAULTS)
    max_seconds_per_point: float = 10.0
    time_limit_s: float = None     # whole run; points past it are recorded as skipped
    count_flops: bool = True
    device: str = "cuda"
    suite: str = "custom"
    threads: int = None            # CPU intra-op threads (None: torch's default)


def _ensure_models_registered():
    try:
        import vig.models  # noqa: F401  (registers vig_* with timm)
    except ImportError:
        pass


def check_config(cfg):
    """Reject bad input before any work, with what was wrong and what would work."""
    import timm
    _ensure_models_registered()
    known = timm.list_models()
    for name in cfg.models:
        if not timm.is_model(name):
            close = [k for k in known if k.startswith(name) or name in k][:5] or \
                difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
            raise UsageError(f"unknown model '{name}'{hint}")
    if cfg.dtype not in timing.DTYPES:
        raise UsageError(f"unknown dtype '{cfg.dtype}'; choose one of {', '.join(timing.DTYPES)}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for but no CUDA GPU is visible; use --device cpu")
    if cfg.device == "cpu" and cfg.dtype == "fp16":
        raise UsageError("dtype fp16 is not benchmarked on CPU (CPU autocast to fp16 is slow and "
                         "unrepresentative); use fp32 or bf16")
    small = [s for s in cfg.img_sizes if s < 16]
    if small:
        raise UsageError(f"image sizes must be at least 16, got {small}")
    # every pixel must be read: timm's ViTs refuse sizes that are not whole patches, and plain ViG's stem would leave
    # the edge unread (a 230 px point would be timed and labelled 230 while it computes what 224 does)
    for name in cfg.models:
        why = unread_input(name, cfg.img_sizes)
        if why:
            raise UsageError(why)
    if cfg.threads is not None and cfg.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {cfg.threads}")
    if any(b < 1 for b in cfg.batch_sizes):
        raise UsageError(f"batch sizes must be >= 1, got {cfg.batch_sizes}")
    unknown_modes = set(cfg.modes) - {"infer", "train"}
    if unknown_modes:
        raise UsageError(f"unknown mode(s) {sorted(unknown_modes)}; choose infer and/or train")


def unread_input(name, sizes, model=None):
    """Why `name` cannot be timed at one of `sizes` (an input it would not read whole), or None. Models with a timm
    patch embedding need whole patches; plain ViG's conv stem (cfgs.unread_edge) leaves the edge of some sizes
    unread; CNNs and ViG-H's stride-2 convs read any size. model: `name` already built (shapes suffice)."""
    from vig.models.cfgs import create_for_shapes, unread_edge
    model = model if model is not None else create_for_shapes(name)
    edges = {s: unread_edge(model, s) for s in sizes}
    if any(e is not None for e in edges.values()):
        bad = [s for s, (px, _) in edges.items() if px]
        if bad:
            px, stride = edges[bad[0]]
            return (f"{name} would leave {px} px of a {bad[0]} px input unread (its stem's stride is {stride}); use "
                    f"multiples of {stride}, got {bad}")
        return None
    embed = getattr(model, "patch_embed", None)
    p = getattr(embed, "patch_size", None)
    p = p[0] if isinstance(p, (tuple, list)) and len(set(p)) == 1 else p
    if isinstance(p, int):
        bad = [s for s in sizes if s % p]
        if bad:
            return f"image sizes must be multiples of {p} for {name} (its {p}-px patches), got {bad}"
    return None


def environment(device):
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    from vig.layers.fused import linear_swiglu_kernels
    from vig.ops.bigla import resolve_backend
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch": torch.__version__, "triton": version("triton"), "timm": version("timm"),
        "vig": version("vig"), "python": platform.python_version(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        # a busy host slows CPU timings by large factors: keep the context with the numbers
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "bigla_backend_auto": resolve_backend("auto", device),
        "linear_swiglu_kernels": linear_swiglu_kernels(device),  # the MLP's route follows the GPU and triton
        # the run's switches (VIG_FUSED_OFF=proj_merge, VIG_BIGLA_MAXNREG=...): an A/B row is only readable with them
        "vig_settings": {k: v for k, v in sorted(os.environ.items()) if k.startswith("VIG_")},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    env.update(code_identity())
    return env


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU: " + (platform.processor() or platform.machine())


def create_model(name, img_size, device="cpu"):
    """A randomly initialised timm model for img_size x img_size inputs (no weights are downloaded)."""
    import timm
    _ensure_models_registered()
    with torch.device(device):
        try:
            return timm.create_model(name, pretrained=False, img_size=img_size)
        except TypeError:  # models without an img_size argument take any size
            return timm.create_model(name, pretrained=False)


def model_flops_entry(name, img_size, modes):
    """GMACs per image (forward; forward+backward when training is benchmarked), BiGLA part shown apart."""
    entry = {}
    try:
        model = create_model(name, img_size, device="meta")
        in_chans = getattr(model, "in_chans", 3)
        fwd = flops.model_flops(model, img_size, train=False, in_chans=in_chans)
        entry.update(gmacs_fwd=fwd["total"] / 2e9, gmacs_fwd_bigla=fwd["bigla"] / 2e9)
        if "train" in modes:
            both = flops.model_flops(model, img_size, train=True, in_chans=in_chans)
            entry.update(gmacs_train=both["total"] / 2e9, gmacs_train_bigla=both["bigla"] / 2e9)
    except Exception as err:  # noqa: BLE001  (FLOPs are a side result; never lose the timings for them)
        entry["flops_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    return entry


def batch_for(cfg, batch, img_size):
    if not cfg.scale_batch:
        return batch
    return max(1, int(batch * min(1.0, (224 / img_size) ** 2)))  # shrink above 224 px, never grow


def run(cfg, log=print, on_point=None):
    """Run every (model, img_size, batch, mode) point of cfg. Returns the result dict (JSON-ready).

    on_point(points_so_far) is called after each measured point (e.g. to save partial results)."""
    check_config(cfg)
    threads_before = torch.get_num_threads()
    if cfg.threads:
        # On a shared or oversubscribed CPU one thread can be 10-20x faster than spin-waiting OpenMP teams.
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, log, on_point)
    finally:
        torch.set_num_threads(threads_before)


def set_cuda_timing_flags(device):
    """cuDNN's autotuner and TF32 on CUDA: the settings every timing here runs under. Kernel tables set them too, so
    that they show the kernels the timings ran (without the autotuner DeiT's patch-embed conv can take another
    algorithm)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _run(cfg, log, on_point):
    device = torch.device(cfg.device)
    set_cuda_timing_flags(device)
    deadline = None if cfg.time_limit_s is None else time.monotonic() + cfg.time_limit_s
    points = []
    for name in cfg.models:
        for img in cfg.img_sizes:
            base = {"model": name, "img_size": img, "dtype": cfg.dtype, "compile": cfg.compile,
                    "compile_mode": cfg.compile_mode if cfg.compile else None,
                    "channels_last": cfg.channels_last, "suite": cfg.suite}
            if deadline is not None and time.monotonic() > deadline:
                points += [{**base, "mode": m, "batch": batch_for(cfg, b, img), "status": "skipped",
                            "reason": "time limit"} for b in cfg.batch_sizes for m in cfg.modes]
                continue
            extra = model_flops_entry(name, img, cfg.modes) if cfg.count_flops else {}
            try:
                model = create_model(name, img, device=device)
            except Exception as err:  # noqa: BLE001  (one model that cannot be built must not end the run)
                if not timing.is_oom(err):
                    log(f"{name} {img}px: cannot build: {type(err).__name__}: {err}")
                status = "oom" if timing.is_oom(err) else "error"
                points += [{**base, **extra, "mode": m, "batch": batch_for(cfg, b, img), "status": status,
                            "error": f"{type(err).__name__}: {str(err)[:200]}"}
                           for b in cfg.batch_sizes for m in cfg.modes]
                timing.free_memory(device)
                continue
            extra["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
            if cfg.channels_last:
                model = model.to(memory_format=torch.channels_last)
            runnable = compile_for_point(model, cfg.compile_mode) if cfg.compile else model
            for b in cfg.batch_sizes:
                batch = batch_for(cfg, b, img)
                for mode in cfg.modes:
                    point = {**base, **extra, "mode": mode, "batch": batch}
                    if deadline is not None and time.monotonic() > deadline:
                        points.append({**point, "status": "skipped", "reason": "time limit"})
                        continue
                    try:
                        point.update(timing.measure(
                            runnable, mode, batch, img, device, cfg.dtype, warmup=cfg.warmup,
                            repeats=cfg.repeats, iters=cfg.iters, channels_last=cfg.channels_last,
                            max_seconds=cfg.max_seconds_per_point,
                            num_classes=getattr(model, "num_classes", 1000)))
                    except Exception as err:  # noqa: BLE001  (recorded; the other points still run)
                        point.update(status="error", error=f"{type(err).__name__}: {str(err)[:300]}")
                        timing.free_memory(device)
                    log(format_point(point))
                    points.append(point)
                    if on_point is not None:
                        on_point(points)
            del model, runnable
            timing.free_memory(device)
    return {"schema": "vig-bench/1", "env": environment(device), "config": dataclasses.asdict(cfg),
            "results": points}


def compile_for_point(model, mode):
    """torch.compile for one (model, resolution): dynamo's caches reset and shapes static, so every resolution
    is timed with its own specialised graph, as a one-resolution deployment would run. Without this, a model
    class's second resolution hits the first one's cache entry and recompiles with dynamic shapes (H200, ViG-T
    2048² bs 16 under CUDA graphs: 38.8 ms per step after a 1024² point in the same run, 31.8 ms alone)."""
    torch._dynamo.reset()
    return torch.compile(model, mode=mode, dynamic=False)


def format_point(p):
    head = f"{p['model']:<24} {p['mode']:<5} {p['img_size']:>4}px bs{p['batch']:<4} {p['dtype']}"
    if p.get("status") != "ok":
        return f"{head}  {p.get('status')}: {p.get('reason') or p.get('error', '')}"
    mem = "" if p.get("peak_mem_mib") is None else f"  peak {p['peak_mem_mib']:.0f} MiB"
    gm = "" if "gmacs_fwd" not in p else f"  {p['gmacs_fwd']:.3f} GMACs"
    host = "" if p.get("host_ms_per_step") is None else (
        f"  host {p['host_ms_per_step']:.1f} of {p['ms_per_step']:.1f} ms/step")
    gpu = "" if p.get("gpu_ms_per_step") is None else f"  kernels {p['gpu_ms_per_step']:.1f} ms/step"
    return f"{head}  {p['img_per_s']:9.1f} img/s{mem}{gm}{host}{gpu}"


def write_json(data, path):
    """Atomic write: a temp file in the same directory, then os.replace (no half-written results)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return atomic_write(path, lambda f: f.write(json.dumps(data, indent=1, sort_keys=False) + "\n"), binary=False)
