"""Per-kernel CUDA time of the BiGLA op (torch profiler), for kernel settings given as env variants.

Usage: python benchmarks/profile_bigla.py [--shape 256,196,3,32,64] [--variants NAME:VAR=VAL,...]
Prints and writes JSON (benchmarks/results/profile_bigla_<gpu>.json): for fwd and fwd+bwd, the
CUDA time per call of every kernel, averaged over --iters calls after warmup.
"""
import argparse
import json
import os
import tempfile

import torch
# the sibling script (same folder)
from bench_bigla import env_overrides, fwd_bwd_fresh_grads, make_inputs, parse_variant
from torch.profiler import ProfilerActivity, profile

from vig.ops.bigla import bigla


def triton_bigla(*xs):
    return bigla(*xs, backend="triton")


def kernel_table(step, iters):
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
    rows = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t > 0 and e.count >= iters:
            rows[e.key[:90]] = round(t / iters, 2)  # us per call
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="256,196,3,32,64")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--variants", nargs="*", default=["default:"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    report = {"gpu": torch.cuda.get_device_name(), "shape_BTHKV": shape, "dtype": "bf16", "us_per_call": {}}
    for spec in args.variants:
        name, env = parse_variant(spec)
        try:
            with env_overrides(env):
                xs, do = make_inputs(*shape, torch.bfloat16, False)
                with torch.no_grad():
                    fwd = kernel_table(lambda: triton_bigla(*xs), args.iters)
                xs, do = make_inputs(*shape, torch.bfloat16, True)
                both = kernel_table(lambda: fwd_bwd_fresh_grads(triton_bigla, xs, do), args.iters)
            report["us_per_call"][name] = {"env": env, "fwd": fwd, "fwd_bwd": both}
        except Exception as e:  # a failing variant is a result
            report["us_per_call"][name] = {"env": env, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(name, json.dumps(report["us_per_call"][name]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "profile_bigla_" + report["gpu"].replace(" ", "_") + ".json")
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
