"""Table 3, last row: ViG-T with the fused bidirectional op against the "direct two-pass" form.

Variants (the model code is untouched; the op is swapped at its call site, see vig.bench.two_pass):
  fused           the model as shipped (backend auto: the Triton kernel on CUDA, the torch path on CPU)
  fused_torch     the fused op forced onto our chunked torch path
  two_pass_torch  flip + concat along the batch + one causal pass of our torch path (the official training form)
  two_pass_fla    the same with fla-core's chunk_gla (only where fla-core is installed)
fused_torch vs two_pass_torch isolates the fusion (same building blocks); fused vs two_pass_* is what a
user gets. The paper reports +21.9% throughput and -13.3% memory (RTX 4090, bs 256, 224²).

  python benchmarks/bench_ablation.py --out benchmarks/results            # GPU: bs 256, 224², bf16, eager
  python benchmarks/bench_ablation.py --compile-mode reduce-overhead      # the same under CUDA graphs
  python benchmarks/bench_ablation.py --device cpu --batch 4 --img-size 64 --out /tmp/abl
"""
import argparse
import json
import os
import sys
import time

import torch

from vig.bench import paper, runner, timing, two_pass


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="vig_tiny")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, help="default 256 on GPU, 4 on CPU")
    p.add_argument("--dtype", choices=list(timing.DTYPES), help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--device", choices=["cuda", "cpu"])
    p.add_argument("--variants", nargs="+")
    p.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--max-seconds-per-point", type=float, default=10.0)
    p.add_argument("--time-limit", type=float, default=None, help="skip (and record) points after S seconds")
    p.add_argument("--compile-mode", default=None, metavar="MODE",
                   help="torch.compile each variant's model in this mode (reduce-overhead: CUDA graphs, as vig bench "
                        "times the models); default eager, where a bs-256 step is bound by the host")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default=None, help="file stem (default ablation_<device>)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    p.add_argument("--no-plots", action="store_true", help="JSON only (redraw later with --replot)")
    p.add_argument("--replot", metavar="JSON", help="only redraw the PNG of an existing result file")
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = args.device == "cuda"
    args.batch = args.batch or (256 if gpu else 4)
    args.dtype = args.dtype or ("bf16" if gpu else "fp32")
    if args.variants is None:
        args.variants = ["fused", "two_pass_torch", "fused_torch"]  # most telling first, under a time limit
        if two_pass.fla_available():
            args.variants.append("two_pass_fla")
    return args


def agreement(model, variants, img_size, device):
    """Max relative difference of each variant's op output to the shipped op, at every call inside the model.

    Checked at the op, not the logits: at random init the logits barely depend on the mixer."""
    from vig.ops.bigla import bigla
    x = torch.randn(2, 3, img_size, img_size, device=device)
    model.eval()
    diffs = {}
    for name in variants:
        op = two_pass.variant(name) or bigla
        worst = []

        def spy(*a, **kw):
            ref, out = bigla(*a, **kw), op(*a, **kw)
            worst.append(((out.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30)).item())
            return out
        with torch.no_grad(), two_pass.patched_bigla(spy):
            model(x)
        diffs[name] = max(worst)
    return diffs


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001  (a failed check is recorded; the timings still run)
        return {"error": f"{type(err).__name__}: {str(err)[:300]}"}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def pct(new, old):
    return None if not new or not old else 100.0 * (new / old - 1.0)


def compare(results, a, b):
    """Throughput and memory change of variant a relative to variant b, per mode (paper's sign convention).
    gpu_throughput_pct compares the steps' kernel time alone (CUDA): an eager ViG-T step at bs 256 is bound by the
    host, which hides the op's difference in the wall-clock throughput."""
    table = {}
    for mode in ("infer", "train"):
        pa = next((r for r in results if r["variant"] == a and r["mode"] == mode and r.get("status") == "ok"), None)
        pb = next((r for r in results if r["variant"] == b and r["mode"] == mode and r.get("status") == "ok"), None)
        if pa and pb:
            table[mode] = {"throughput_pct": pct(pa["img_per_s"], pb["img_per_s"]),
                           "gpu_throughput_pct": pct(pa.get("gpu_img_per_s"), pb.get("gpu_img_per_s")),
                           "memory_pct": pct(pa.get("peak_mem_mib"), pb.get("peak_mem_mib"))}
    return table


def plot(data, path):
    from vig.bench.plots import _pyplot, _save
    plt = _pyplot()
    ok = [r for r in data["results"] if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "img_per_s", "img/s"), (axes[1], "peak_mem_mib", "peak memory (MiB)")):
        names = [f"{r['variant']}\n{r['mode']}" for r in ok if r.get(key) is not None]
        vals = [r[key] for r in ok if r.get(key) is not None]
        ax.bar(range(len(vals)), vals, color=["tab:red" if "fused" in n else "tab:gray" for n in names])
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(names, fontsize=7, rotation=30)
        if not vals:
            ax.text(0.5, 0.5, "peak memory is measured on CUDA only", ha="center", transform=ax.transAxes)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    cfg, env = data["config"], data["env"]
    run = f"compiled {cfg['compile_mode']}" if cfg.get("compile_mode") else "eager"
    fig.suptitle(f"{cfg['model']} {cfg['img_size']}² bs{cfg['batch']} {cfg['dtype']} {run} ({env['device_name']}); "
                 "paper: fused +21.9% img/s, -13.3% memory")
    _save(fig, path)
    plt.close(fig)


def main(argv=None):
    args = parse(argv)
    if args.replot:
        with open(args.replot) as f:
            data = json.load(f)
        out = os.path.join(args.out, os.path.basename(args.replot)[:-len(".json")] + ".png")
        plot(data, out)
        print("wrote", out)
        return 0
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = runner.BenchConfig(models=[args.model], img_sizes=[args.img_size], batch_sizes=[args.batch],
                             dtype=args.dtype, device=args.device)
    runner.check_config(cfg)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    model = runner.create_model(args.model, args.img_size, device=device)
    stem = args.name or f"ablation_{device.type}"
    data = {"schema": "vig-bench-ablation/1", "env": runner.environment(device),
            "config": {k: v for k, v in vars(args).items()}, "complete": False,
            "op_rel_diff_fp32": _safe(agreement, model, args.variants, 64, device),
            "results": [], "comparisons": {}, "paper_table3": paper.TABLE3_FUSED_GAIN}
    results = data["results"]
    for name in args.variants:
        op = two_pass.variant(name)
        for mode in args.modes:
            point = {"variant": name, "mode": mode, "batch": args.batch}
            if deadline is not None and time.monotonic() > deadline:
                results.append({**point, "status": "skipped", "reason": "time limit"})
                print(f"{name:<15} {mode:<5} skipped: time limit", flush=True)
                continue
            with (two_pass.patched_bigla(op) if op is not None else _null()):
                try:  # compiled inside the swap, so the graph holds this variant's op
                    runnable = runner.compile_for_point(model, args.compile_mode) if args.compile_mode else model
                    point.update(timing.measure(runnable, mode, args.batch, args.img_size, device, args.dtype,
                                                warmup=args.warmup, repeats=args.repeats, iters=args.iters,
                                                max_seconds=args.max_seconds_per_point))
                except Exception as err:  # noqa: BLE001  (recorded; the other variants still run)
                    point.update(status="error", error=f"{type(err).__name__}: {str(err)[:300]}")
            if point.get("status") == "ok":
                gpu = point.get("gpu_img_per_s") or float("nan")
                line = (f"{point['img_per_s']:9.1f} img/s (kernels alone {gpu:.1f})"
                        f"  peak {point['peak_mem_mib'] or float('nan'):.0f} MiB")
            else:
                line = f"{point.get('status')}: {point.get('error', point.get('reason'))}"
            print(f"{name:<15} {mode:<5} {line}", flush=True)
            results.append(point)
            runner.write_json(data, os.path.join(args.out, f"{stem}.json"))  # partial: survives a time bound
    comparisons = {f"{a}_vs_{b}": compare(results, a, b) for a, b in
                   [("fused_torch", "two_pass_torch"), ("fused", "two_pass_torch"), ("fused", "two_pass_fla")]
                   if a in args.variants and b in args.variants}
    data.update(comparisons=comparisons, complete=True)
    print("wrote", runner.write_json(data, os.path.join(args.out, f"{stem}.json")))
    if not args.no_plots:
        plot(data, os.path.join(args.out, f"{stem}.png"))
    for key, table in comparisons.items():
        for mode, d in table.items():
            mem, gpu = ("n/a" if d[k] is None else f"{d[k]:+.1f}%" for k in ("memory_pct", "gpu_throughput_pct"))
            print(f"{key} [{mode}]: throughput {d['throughput_pct']:+.1f}% (kernels alone {gpu}), memory {mem}")
    return 1 if any(r.get("status") == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
