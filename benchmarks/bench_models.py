"""Model benchmark presets on the `vig bench` code: the issue-6 target table and the Fig. 4 resolution sweep.

  python benchmarks/bench_models.py --preset gpu --out benchmarks/results     # one H100: <= 7 min, time-bounded
  python benchmarks/bench_models.py --preset cpu --out benchmarks/results     # a few minutes on a laptop
  python benchmarks/bench_models.py --replot benchmarks/results/models_<device>.json   # PNG + markdown again

Writes models_<device>.json (every point, the environment, and a check that `vig info` and the bench FLOP
counter agree, and that both match spec §6), models_<device>_{resolution,accuracy}.png and models_<device>.md
(a README-ready table). Points past a suite's time budget are recorded as skipped, never silently dropped.
"""
import argparse
import dataclasses
import json
import os
import re
import sys
import time

import torch

from vig.bench import flops, paper, plots, runner

VIG = ["vig_tiny", "vig_small", "vig_base"]
VIG_H = ["vig_h_tiny", "vig_h_small", "vig_h_base"]
DEIT = ["deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224"]
PAIRS = dict(zip(VIG, DEIT))

PRESETS = {
    # Issue 6 targets: bs 256 at 224², bf16 autocast, ViG-T/S/B vs DeiT-T/S/B, inference and training.
    # Then Fig. 4: ViG-T vs DeiT-T from 512 to 2048 (224 is in the table), inference, batch 256 shrunk by
    # (224/px)^2 so every point moves the same pixels per step.
    "gpu": [dict(suite="table", models=VIG + DEIT, img_sizes=[224], batch_sizes=[256], dtype="bf16",
                 modes=("infer", "train"), time_limit_s=180.0, device="cuda"),
            dict(suite="sweep", models=["vig_tiny", "deit_tiny_patch16_224"],
                 img_sizes=list(paper.FIG4_RESOLUTIONS[1:]), batch_sizes=[256], scale_batch=True, dtype="bf16",
                 modes=("infer",), time_limit_s=120.0, device="cuda"),
            # ViG-H inference for the accuracy scatter (the paper's Table 1 throughput column).
            dict(suite="hier", models=VIG_H, img_sizes=[224], batch_sizes=[256], dtype="bf16", modes=("infer",),
                 time_limit_s=50.0, device="cuda")],
    # torch.compile and channels-last on ViG-T / DeiT-T only (compilation takes minutes).
    "gpu-compile": [dict(suite="compile", models=["vig_tiny", "deit_tiny_patch16_224"], img_sizes=[224],
                         batch_sizes=[256], dtype="bf16", modes=("infer", "train"), compile=True,
                         channels_last=True, warmup=5, time_limit_s=400.0, device="cuda")],
    "cpu": [dict(suite="table", models=["vig_tiny", "deit_tiny_patch16_224"], img_sizes=[224], batch_sizes=[8],
                 dtype="fp32", modes=("infer", "train"), warmup=1, repeats=3, iters=1, device="cpu",
                 max_seconds_per_point=20.0, time_limit_s=300.0),
            dict(suite="sweep", models=["vig_tiny", "deit_tiny_patch16_224"], img_sizes=[448, 672],
                 batch_sizes=[8], scale_batch=True, dtype="fp32", modes=("infer",), warmup=1, repeats=3, iters=1,
                 device="cpu", max_seconds_per_point=20.0, time_limit_s=150.0)],
}


def device_slug(env):
    name = env.get("device_name") or env.get("device", "unknown")
    if env.get("device", "").startswith("cpu"):
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def info_check(models, img_size=224):
    """`vig info` GMACs (its count_macs, with our BiGLA formula registered) against the bench counter and spec §6."""
    from vig.models.commands import count_macs
    rows = []
    for name in models:
        row = {"model": name, "img_size": img_size}
        try:
            flops.register_bigla_flops()
            model = runner.create_model(name, img_size)
            info_macs, _ = count_macs(model, (img_size, img_size))
            bench = flops.model_flops(runner.create_model(name, img_size, device="meta"), img_size)
            row.update(vig_info_gmacs=info_macs / 1e9, bench_gmacs=bench["total"] / 2e9,
                       bench_bigla_gmacs=bench["bigla"] / 2e9)
            row["rel_diff"] = abs(row["vig_info_gmacs"] - row["bench_gmacs"]) / row["bench_gmacs"]
            if name in flops.SPEC_GMACS_224 and img_size == 224:
                spec = sum(flops.SPEC_GMACS_224[name])
                row.update(spec_gmacs=spec, rel_diff_spec=abs(row["bench_gmacs"] - spec) / spec)
        except Exception as err:  # noqa: BLE001  (a model not built yet must not stop the benchmark)
            row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
        rows.append(row)
    return rows


def traffic_check(models=("vig_tiny", "deit_tiny_patch16_224"), img_size=224):
    """Kernels and bytes per image of a bf16-autocast forward by module (CPU, shapes only matter)."""
    from vig.bench import traffic
    out = {}
    for name in models:
        try:
            rows = traffic.op_traffic(runner.create_model(name, img_size), img_size, "bf16")
            out[name] = {"summary": traffic.summary(rows), "by_group": rows}
            top = "; ".join(f"{k} {v['kernels']} kernels {v['mb_per_img']:.1f} MB"
                            for k, v in list(rows.items())[:4])
            print(f"traffic {name}: {out[name]['summary']}; top: {top}", flush=True)
        except Exception as err:  # noqa: BLE001  (an analysis extra; never lose the timings for it)
            out[name] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
    return out


def profiles(spec, path, data):
    """Top kernels of ViG-T and DeiT-T steps at the table's batch and dtype (saved into the result JSON)."""
    from vig.bench.profile import top_kernels
    device = torch.device(spec["device"])
    rows = []
    for name in ("vig_tiny", "deit_tiny_patch16_224"):
        for mode in spec["modes"]:
            try:
                img = spec["img_sizes"][0]
                model = runner.create_model(name, img, device=device)
                prof = top_kernels(model, mode, spec["batch_sizes"][0], img, device, spec["dtype"])
                rows.append({"model": name, **prof})
                host = prof["host_ms_per_step"]
                print(f"profile {name} {mode}: {prof['total_ms_per_step']:.2f} ms/step GPU, "
                      + (f"{host:.2f} ms/step host, " if host is not None else "")
                      + f"{prof['kernels_per_step']:.0f} kernels/step; top: "
                      + "; ".join(f"{r['name'][:40]} {r['pct']:.0f}%" for r in prof["top"][:5]), flush=True)
            except Exception as err:  # noqa: BLE001  (recorded; profiling is an extra)
                rows.append({"model": name, "mode": mode, "error": f"{type(err).__name__}: {str(err)[:200]}"})
            finally:
                model = None
                runner.timing.free_memory(device)
            if path:
                runner.write_json({**data, "profiles": rows}, path)
    return rows


def markdown(data):
    """README table: model, resolution, batch, dtype, img/s, peak memory, GMACs, ratio to DeiT of the same size."""
    env = data["env"]
    ok = {(p["model"], p["mode"], p["img_size"], p["batch"]): p for p in data["results"] if p.get("status") == "ok"}
    lines = [f"Measured on {env['device_name']}, torch {env['torch']}, triton {env['triton']}, "
             f"BiGLA backend {env['bigla_backend_auto']}, {env['created_utc']} (median of repeats, synchronised)"
             + (f"; host load average {env['load_avg_1m']:.1f} on {env.get('cpu_count')} cores, "
                f"{env.get('cpu_threads')} torch threads" if env.get("device", "").startswith("cpu")
                and env.get("load_avg_1m") is not None else "") + ".", "",
             "| suite | model | res | batch | dtype | infer img/s | train img/s | infer mem GiB | train mem GiB "
             "| GMACs (fwd, BiGLA incl.) | infer / DeiT | train / DeiT |", "|" + "---|" * 12]
    seen = set()
    for p in data["results"]:
        key = (p["suite"], p["model"], p["img_size"], p["batch"])
        if key in seen:
            continue
        seen.add(key)
        row = {m: ok.get((p["model"], m, p["img_size"], p["batch"])) for m in ("infer", "train")}
        other = PAIRS.get(p["model"])
        if other is None and p["model"] == "vig_tiny":
            other = "deit_tiny_patch16_224"
        ratio = {}
        for m in ("infer", "train"):
            mine, theirs = row[m], ok.get((other, m, p["img_size"], p["batch"]))
            ratio[m] = f"{mine['img_per_s'] / theirs['img_per_s']:.2f}x" if mine and theirs else ""

        def cell(m, key, fmt, scale=1.0):
            q = row[m]
            if q is None:
                status = next((r.get("status") for r in data["results"] if r["model"] == p["model"]
                               and r["mode"] == m and r["img_size"] == p["img_size"] and r["batch"] == p["batch"]), "")
                return status if status and status != "ok" else ""
            return "" if q.get(key) is None else fmt.format(q[key] * scale)
        gm = "" if p.get("gmacs_fwd") is None else f"{p['gmacs_fwd']:.3f}"
        lines.append(f"| {p['suite']} | {paper.label(p['model'])} | {p['img_size']} | {p['batch']} | {p['dtype']} "
                     f"| {cell('infer', 'img_per_s', '{:,.0f}')} | {cell('train', 'img_per_s', '{:,.0f}')} "
                     f"| {cell('infer', 'peak_mem_mib', '{:.2f}', 1 / 1024)} "
                     f"| {cell('train', 'peak_mem_mib', '{:.2f}', 1 / 1024)} | {gm} "
                     f"| {ratio['infer']} | {ratio['train']} |")
    if data.get("traffic"):
        lines += ["", "Forward pass at 224², bf16 autocast, per image (counted on CPU by vig.bench.traffic: "
                  "tensor bytes read + written by each op, views excluded):", "",
                  "| model | kernels | elementwise kernels | elementwise MB/img | largest group |", "|---|---|---|---|---|"]
        for name, t in data["traffic"].items():
            if "summary" in t:
                (group, top), = list(t["by_group"].items())[:1]
                total = t["summary"]
                lines.append(f"| {paper.label(name)} | {total['kernels']} | {total['elementwise_kernels']} "
                             f"| {total['elementwise_mb_per_img']:.1f} | {group}: {top['mb_per_img']:.1f} MB |")
    return "\n".join(lines) + "\n"


def write_outputs(data, out_dir):
    stem = f"models_{device_slug(data['env'])}"
    written = [runner.write_json(data, os.path.join(out_dir, f"{stem}.json"))]
    sweep = {**data, "results": [p for p in data["results"] if p["suite"] in ("sweep", "table")]}
    table = {**data, "results": [p for p in data["results"] if p["suite"] in ("table", "hier")]}
    written.append(plots.plot_resolution(sweep, os.path.join(out_dir, f"{stem}_resolution.png"),
                                         models=["vig_tiny", "deit_tiny_patch16_224"]))
    written.append(plots.plot_accuracy(table, os.path.join(out_dir, f"{stem}_accuracy.png")))
    md = os.path.join(out_dir, f"{stem}.md")
    with open(md + ".tmp", "w") as f:
        f.write(markdown(data))
    os.replace(md + ".tmp", md)
    return written + [md]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="gpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--replot", metavar="JSON", help="only redraw PNG + markdown from an existing result file")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply every suite's time budget")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    p.add_argument("--no-info-check", action="store_true")
    p.add_argument("--no-plots", action="store_true", help="JSON only (redraw later with --replot)")
    p.add_argument("--profile", action="store_true",
                   help="after the suites, save the top kernels of ViG-T and DeiT-T steps (torch.profiler)")
    args = p.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            data = json.load(f)
        for path in write_outputs(data, args.out):
            print("wrote", path)
        return 0
    start = time.monotonic()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = {"schema": "vig-bench-models/1", "preset": args.preset, "complete": False, "configs": [],
            "config": {"dtype": PRESETS[args.preset][0]["dtype"]}, "results": []}
    if not args.no_info_check:  # first: cheap, and a wrong FLOP count invalidates the GMACs column
        data["info_check"] = info_check(VIG + VIG_H)
        for row in data["info_check"]:
            print("info check:", row, flush=True)
        data["traffic"] = traffic_check()
    stem = None
    for spec in PRESETS[args.preset]:
        cfg = runner.BenchConfig(**{**spec, "time_limit_s": spec.get("time_limit_s", 1e9) * args.time_scale,
                                    "threads": args.threads})
        data["configs"].append(dataclasses.asdict(cfg))
        print(f"== suite {cfg.suite}: {len(cfg.models)} models x {cfg.img_sizes} px, {cfg.dtype}, {cfg.modes}",
              flush=True)
        done = list(data["results"])
        data.setdefault("env", runner.environment(torch.device(cfg.device)))
        stem = f"models_{device_slug(data['env'])}"

        def save_partial(points):  # a run killed by a time bound keeps what it measured
            runner.write_json({**data, "results": done + points, "wall_s": time.monotonic() - start},
                              os.path.join(args.out, f"{stem}.json"))
        suite = runner.run(cfg, log=lambda s: print(s, flush=True), on_point=save_partial)
        data["results"] = done + suite["results"]
    if args.profile:  # last: the numbers above must not wait for it
        data["profiles"] = profiles(PRESETS[args.preset][0], stem and os.path.join(args.out, f"{stem}.json"), data)
    data.update(complete=True, wall_s=time.monotonic() - start)
    if args.no_plots:
        print("wrote", runner.write_json(data, os.path.join(args.out, f"{stem}.json")))
    else:
        for path in write_outputs(data, args.out):
            print("wrote", path)
    print(markdown(data))
    return 1 if any(r.get("status") == "error" for r in data["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
