"""CPU micro-benchmark of the BiGLA op: backend="torch" (chunked) against "naive" (the per-step loop).

The torch path is timed twice: as it runs (in-chunk scores factored wherever a chunk's gates allow, chunk.py) and
with every chunk forced onto the pairwise form (what compile, export and GPU calls run; the only form before
session 56).

ViG-like heads at T=196 (ViG-T at 224: K=32, V=64, H=3) and T=3136 (ViG-H stage 1: K=16, V=32),
fp32, forward (under no_grad) and forward+backward. Each case: warmup, then the median of repeats timed
with time.process_time (this process's CPU time: on one thread a shared box's other load adds little to it;
with --threads other than 1, the wall clock, time.perf_counter). A case whose first run already takes
longer than --slow-s is timed from that single run ("repeats": 1). Each naive case runs in a forked child that is stopped after
--naive-cap-s (its autograd backward grows ~T^2 at T=3136); a stopped case reports
"timed_out_after_s" and the speedup becomes a lower bound. Runtime stays under ~3 minutes.
Default: one intra-op thread, because a shared, oversubscribed box makes multi-thread timings noise.

    python3 benchmarks/bench_bigla_cpu.py [--threads N] [--out benchmarks/results/bigla_cpu.json]
"""
import argparse
import inspect
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time

import contextlib

import torch
import torch.nn.functional as F

from vig.ops.bigla import bigla, chunk
from vig.ops.bigla.chunk import bigla_chunk

CLOCK = {"clock": time.process_time}

CASES = (  # name, B, T, H, K, V
    ("vig_t_224", 2, 196, 3, 32, 64),
    ("vig_h_stage1", 2, 3136, 3, 16, 32),
)


def make_inputs(B, T, H, K, V, grad):
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, B, T, H, K, generator=gen)
    v = torch.randn(B, T, H, V, generator=gen)
    gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, generator=gen)) / 16
    return [x.requires_grad_(grad) for x in (q, k, v, gf, gb)]


@contextlib.contextmanager
def pairwise_only():
    """Every chunk on the pairwise form, as where values cannot be read (chunk._eager_cpu false)."""
    eager_cpu = chunk._eager_cpu
    chunk._eager_cpu = lambda x: False
    try:
        yield
    finally:
        chunk._eager_cpu = eager_cpu


def time_case(backend, inputs, grad, repeats, warmup, slow_s):
    clock = CLOCK["clock"]

    def once():
        t0 = clock()
        if grad:
            bigla(*inputs, backend=backend).sum().backward()
        else:
            with torch.no_grad():
                bigla(*inputs, backend=backend)
        return clock() - t0

    first = once()
    if first > slow_s:
        return [first], 0
    for _ in range(warmup - 1):
        once()
    return [once() for _ in range(repeats)], warmup


def _child(conn, backend, shape, grad, args):
    conn.send(time_case(backend, make_inputs(*shape, grad), grad, args.repeats, args.warmup, args.slow_s))


def time_guarded(backend, shape, grad, args):
    """time_case in a forked child, stopped after args.naive_cap_s. Returns (times, warmup) or None."""
    parent, child = mp.get_context("fork").Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=_child, args=(child, backend, shape, grad, args))
    proc.start()
    got = parent.recv() if parent.poll(args.naive_cap_s) else None
    if got is None:
        proc.kill()  # only this child, which we started
    proc.join()
    return got


def run(args):
    results = []
    for name, B, T, H, K, V in CASES:
        for mode in ("fwd", "fwd+bwd"):
            grad = mode == "fwd+bwd"
            row = dict(case=name, shape=dict(B=B, T=T, H=H, K=K, V=V), mode=mode)
            timed = time_case("torch", make_inputs(B, T, H, K, V, grad), grad, args.repeats, args.warmup, args.slow_s)
            with pairwise_only():
                pairwise = time_case("torch", make_inputs(B, T, H, K, V, grad), grad, args.repeats, args.warmup,
                                     args.slow_s)
            naive = time_guarded("naive", (B, T, H, K, V), grad, args)
            for backend, got in (("torch", timed), ("torch_pairwise", pairwise), ("naive", naive)):
                if got is None:
                    row[backend] = dict(median_ms=None, timed_out_after_s=args.naive_cap_s)
                else:
                    times, warm = got
                    row[backend] = dict(median_ms=round(1e3 * statistics.median(times), 3),
                                        repeats=len(times), warmup=warm)
            row["speedup_factored_vs_pairwise"] = round(row["torch_pairwise"]["median_ms"] / row["torch"]["median_ms"],
                                                        2)
            if naive is None:
                row["speedup_torch_vs_naive_at_least"] = round(1e3 * args.naive_cap_s / row["torch"]["median_ms"], 1)
            else:
                row["speedup_torch_vs_naive"] = round(row["naive"]["median_ms"] / row["torch"]["median_ms"], 2)
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--slow-s", type=float, default=5.0, help="a first run slower than this is the only run")
    ap.add_argument("--naive-cap-s", type=float, default=40.0, help="stop a naive case after this many seconds")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bigla_cpu.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.get_num_threads() != 1:
        CLOCK["clock"] = time.perf_counter
    results = run(args)
    report = dict(
        benchmark="bigla_cpu", dtype="float32", timer=f"time.{CLOCK['clock'].__name__}, median",
        torch=torch.__version__, python=platform.python_version(),
        cpu=dict(processor=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                 load_avg_1m_at_end=round(os.getloadavg()[0], 2)),
        threads=torch.get_num_threads(),
        torch_backend_chunk_size=inspect.signature(bigla_chunk).parameters["chunk_size"].default,
        settings=dict(repeats=args.repeats, warmup=args.warmup,
                                                       slow_s=args.slow_s, naive_cap_s=args.naive_cap_s),
        results=results,
    )
    text = json.dumps(report, indent=2)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.out)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:  # temp file then os.replace: never a half-written JSON
        f.write(text + "\n")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
