"""Benchmark of the BiGLA op on a GPU: ours (fused Triton), fla-core chunk_gla two-pass
(flip + concat along the batch, as the official code trains), fla-core fused_recurrent_gla
forward + reverse=True, our torch-chunked backend, and the memory-bandwidth floor.

fla-core is a benchmark-only dependency (never imported from src/). Writes
benchmarks/results/bigla_<gpu>.json and .png. Usage: python benchmarks/bench_bigla.py [--iters 50]
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile

import torch
import torch.nn.functional as F

from vig.bench.provenance import code_identity
from vig.bench.timing import gpu_ms_or_reason, host_ms, peak_extra_mib
from vig.ops.bigla import bigla

DEVICE = torch.device("cuda")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SHAPES = {  # (B, T, H, K, V); bf16 unless --dtype
    "ViG-T 224": (256, 196, 3, 32, 64),
    "ViG-S 224": (256, 196, 6, 32, 64),
    "ViG-B 224": (128, 196, 12, 32, 64),
    "ViG-H-T stage1": (128, 3136, 3, 16, 32),
    "ViG-T 1024": (16, 4096, 3, 32, 64),
    "ViG-T 2048": (4, 16384, 3, 32, 64),
}
EXTRA_SHAPES = {  # on request (--shapes): ViG-H-T's later stages at 224, bs 128; 1024² with 8-16 backward walks an SM
    "ViG-H-T stage2": (128, 784, 6, 16, 32),
    "ViG-H-T stage3": (128, 196, 12, 16, 32),
    "ViG-H-T stage4": (128, 49, 24, 16, 32),
    "ViG-S 1024": (16, 4096, 6, 32, 64),
    "ViG-T 1024 bs32": (32, 4096, 3, 32, 64),
}


def fla_two_pass(q, k, v, gf, gb, scale):
    from fla.ops.gla import chunk_gla
    B = q.shape[0]
    cat = lambda a, b: torch.cat([a, b.flip(1)], 0)  # noqa: E731
    o, _ = chunk_gla(cat(q, q), cat(k, k), cat(v, v), cat(gf, gb), scale=scale)
    return (o[:B] + o[B:].flip(1)) / 2


def fla_recurrent(q, k, v, gf, gb, scale):
    from fla.ops.gla import fused_recurrent_gla
    o_f, _ = fused_recurrent_gla(q, k, v, gk=gf, scale=scale)
    o_b, _ = fused_recurrent_gla(q, k, v, gk=gb, scale=scale, reverse=True)
    return (o_f + o_b) / 2


METHODS = {
    "ours": lambda *a: bigla(*a, backend="triton"),
    # the models' call on CUDA: gates given as logits, logsigmoid(x) / 16 taken inside the kernels (the
    # inputs' log-decays then act as logits: other decay values, the same work)
    "ours_gate_logits": lambda *a: bigla(*a, backend="triton", gate_logit_normalizer=16.0),
    "fla_chunk_two_pass": fla_two_pass,
    "fla_recurrent_fwd_rev": fla_recurrent,
    "torch_chunked": lambda *a: bigla(*a, backend="torch"),
}


def parse_variant(spec):
    """'NAME:VAR=VAL,VAR=VAL' -> (NAME, {VAR: VAL})."""
    name, _, assigns = spec.partition(":")
    return name, dict(a.split("=", 1) for a in assigns.split(",") if a)


@contextlib.contextmanager
def env_overrides(env):
    """Kernel settings are read from the environment at call time: set them for one variant, then restore."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, val in saved.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val


def make_inputs(B, T, H, K, V, dtype, grad):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(B, T, H, K, device="cuda", generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, device="cuda", generator=g, dtype=dtype)
    gf, gb = ((F.logsigmoid(torch.randn(B, T, H, K, device="cuda", generator=g)) / 16).to(dtype) for _ in range(2))
    xs = [x.requires_grad_(grad) for x in (q, k, v, gf, gb)]
    return xs, torch.randn(B, T, H, V, device="cuda", generator=g, dtype=dtype)


def time_ms(step, iters, warmup=10):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def count_kernels(step):
    from torch.profiler import ProfilerActivity, profile
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def copy_bandwidth():
    x = torch.empty(2**30 // 2, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    ms = time_ms(lambda: y.copy_(x), 20, warmup=3)
    return 2 * x.numel() * 2 / (ms * 1e-3)  # bytes read + written per second


def floor_ms(B, T, H, K, V, dtype, bw, with_bwd):
    e = torch.finfo(dtype).bits // 8
    fwd = B * T * H * (4 * K + V) + B * T * H * V  # q, k, gf, gb, v read; o written
    total = fwd + (2 * fwd if with_bwd else 0)  # bwd: inputs + do read, five grads written
    return total * e / bw * 1e3


def gpu_ms_into(res, key, step, iters):
    """res[key_gpu_ms] = GPU-only time, or None with res[key_gpu_error] (the row keeps its other times)."""
    res[key + "_gpu_ms"], why = gpu_ms_or_reason(step, DEVICE, iters=iters)
    if why is not None:
        res[key + "_gpu_error"] = why


def fwd_bwd_fresh_grads(fn, xs, do, *args):
    """One forward + backward with the inputs' .grad cleared first: otherwise every call adds its grads
    into .grad, an add kernel that the op itself never launches."""
    for x in xs:
        x.grad = None
    fn(*xs, *args).backward(do)


def bench_one(method, shape, dtype, iters):
    B, T, H, K, V = shape
    fn = METHODS[method]
    scale = K ** -0.5
    res = {}
    xs, do = make_inputs(B, T, H, K, V, dtype, grad=False)
    with torch.no_grad():
        fwd = lambda: fn(*xs, scale)  # noqa: E731
        res["fwd_ms"] = time_ms(fwd, iters)
        res["fwd_host_ms"] = host_ms(fwd, DEVICE, iters=20, gpu_busy_cycles=20_000_000)
        gpu_ms_into(res, "fwd", fwd, iters)
        res["fwd_mem_mb"] = peak_extra_mib(fwd, DEVICE)
        res["fwd_kernels"] = count_kernels(fwd)
        out = fwd().float()
    del xs
    xs, do = make_inputs(B, T, H, K, V, dtype, grad=True)

    fwd_bwd = lambda: fwd_bwd_fresh_grads(fn, xs, do, scale)  # noqa: E731
    res["fwd_bwd_ms"] = time_ms(fwd_bwd, iters)
    res["fwd_bwd_host_ms"] = host_ms(fwd_bwd, DEVICE, iters=20, gpu_busy_cycles=20_000_000)
    gpu_ms_into(res, "fwd_bwd", fwd_bwd, iters)
    res["fwd_bwd_mem_mb"] = peak_extra_mib(fwd_bwd, DEVICE)
    res["fwd_bwd_kernels"] = count_kernels(fwd_bwd)
    del xs
    torch.cuda.empty_cache()
    return res, out


def kernel_resources():
    """Registers and spills of every compiled BiGLA kernel (what ptxas gave; explains occupancy)."""
    from vig.ops.bigla.triton import launch
    out = {}
    for name in dir(launch):
        fn = getattr(launch, name)
        caches = getattr(fn, "device_caches", None)
        if not name.endswith("_kernel") or not caches:
            continue
        for dev_cache in caches.values():
            for key, k in dev_cache[0].items():
                meta = {c: getattr(k.metadata, c, None) for c in ("num_warps", "num_stages")}
                out.setdefault(name, []).append({"regs": getattr(k, "n_regs", None),
                                                 "spills": getattr(k, "n_spills", None), **meta, "key": str(key)[-160:]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--variants", nargs="*", default=[],
                    help="extra runs of ours as NAME:VAR=VAL[,VAR=VAL], e.g. bt32:VIG_BIGLA_BT=32 "
                         "seg64:VIG_BIGLA_SEGMENT=64 (the launcher reads these at call time)")
    ap.add_argument("--variant-methods", default="ours",
                    help="methods the variants run (comma-separated; e.g. ours,ours_gate_logits)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                    help="the inputs' dtype (fp32 times the full-precision kernels, e.g. its backward's dot precision)")
    args = ap.parse_args()
    import triton
    dtype = DTYPES[args.dtype]
    bw = copy_bandwidth()
    gpu = torch.cuda.get_device_name()
    report = {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "dtype": args.dtype,
              "iters": args.iters, "copy_bandwidth_GBps": bw / 1e9, **code_identity(), "shapes": {},
              "results": {}}
    try:
        import fla
        report["fla_core"] = getattr(fla, "__version__", "?")
    except ImportError:
        report["fla_core"] = None
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "bigla_" + gpu.replace(" ", "_").replace("/", "_"))
    if args.dtype != "bf16":
        stem += "_" + args.dtype
    report["complete"] = False
    for name in args.shapes.split(","):
        shape = {**SHAPES, **EXTRA_SHAPES}[name]
        report["shapes"][name] = shape
        row = {"bandwidth_floor": {"fwd_ms": floor_ms(*shape, dtype, bw, False),
                                   "fwd_bwd_ms": floor_ms(*shape, dtype, bw, True)}}
        ref = None
        report["results"][name] = row  # filled in place and saved after every method: a run cut short keeps its rows
        for m in args.methods.split(","):
            try:
                r, out = bench_one(m, shape, dtype, args.iters)
                # ours_gate_logits reads the shared log-decay inputs as logits: other values by design
                if m != "ours_gate_logits":
                    if ref is None:
                        ref = out
                    r["rel_diff_vs_first"] = float((out - ref).norm() / ref.norm())
            except Exception as e:  # an OOM or a missing fla-core is a result, not a crash
                r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                torch.cuda.empty_cache()
            row[m] = r
            print(name, m, json.dumps(r), flush=True)
            write_json(report, stem + ".json")
        for spec in args.variants:
            vname, env = parse_variant(spec)
            for vm in args.variant_methods.split(","):
                try:
                    with env_overrides(env):
                        r, _ = bench_one(vm, shape, dtype, args.iters)
                    r["env"] = env
                except Exception as e:
                    r = {"error": f"{type(e).__name__}: {str(e)[:200]}", "env": env}
                row[f"{vm}_{vname}"] = r
                print(name, f"{vm}_{vname}", json.dumps(r), flush=True)
                write_json(report, stem + ".json")
    try:
        report["kernel_resources"] = kernel_resources()
    except Exception as e:  # introspection of triton's caches is best effort
        report["kernel_resources"] = {"error": f"{type(e).__name__}: {e}"}
    report["complete"] = True
    write_json(report, stem + ".json")
    plot(report, stem + ".png")
    print_table(report)


def write_json(report, path):
    """Atomic: a temp file in the same folder, then os.replace (never a half-written result)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(report["results"])
    methods = list(dict.fromkeys(m for row in report["results"].values() for m in row))
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    for ax, key in zip(axes, ("fwd_ms", "fwd_bwd_ms")):
        w = 0.8 / len(methods)
        for i, m in enumerate(methods):
            ys = [report["results"][n].get(m, {}).get(key, float("nan")) for n in names]
            ax.bar([j + i * w for j in range(len(names))], ys, w, label=m)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"BiGLA {key[:-3]} — {report['gpu']}, {report['dtype']}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)


def print_table(report):
    print(f"\n{report['gpu']}  copy bw {report['copy_bandwidth_GBps']:.0f} GB/s")
    print("ms: synchronised call (host + GPU); gpu: kernels alone, queued behind a sleep")
    print(f"{'shape':16s} {'method':22s} {'fwd ms':>8s} {'f+b ms':>8s} {'fwd gpu':>8s} {'f+b gpu':>8s} "
          f"{'fwd MB':>8s} {'f+b MB':>8s} {'kern f/fb':>9s}")
    for n, row in report["results"].items():
        for m, r in row.items():
            if "error" in r:
                print(f"{n:16s} {m:22s} {r['error'][:60]}")
                continue
            print(f"{n:16s} {m:22s} {r['fwd_ms']:8.3f} {r['fwd_bwd_ms']:8.3f} {r.get('fwd_gpu_ms') or float('nan'):8.3f} "
                  f"{r.get('fwd_bwd_gpu_ms') or float('nan'):8.3f} {r.get('fwd_mem_mb', 0):8.1f} "
                  f"{r.get('fwd_bwd_mem_mb', 0):8.1f} {r.get('fwd_kernels', '-')!s:>4}/{r.get('fwd_bwd_kernels', '-')!s:<4}")


if __name__ == "__main__":
    sys.exit(main())
