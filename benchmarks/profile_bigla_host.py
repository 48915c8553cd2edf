"""Where the op's host (CPU) time goes at one shape: back-to-back calls with no sync inside the loop (host
time per call), then cProfile over more calls (it adds ~50% overhead; read it for proportions).

  python benchmarks/profile_bigla_host.py --shape 256,196,3,32,64 --out benchmarks/results/bigla_host_profile.txt
"""
import argparse
import cProfile
import io
import pstats
import time

import torch
# the sibling scripts (same folder)
from bench_bigla import fwd_bwd_fresh_grads, make_inputs
from profile_bigla import triton_bigla


def host_ms(step, calls):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        step()
    ms = (time.perf_counter() - t) / calls * 1e3
    torch.cuda.synchronize()
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="256,196,3,32,64")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    xs, do = make_inputs(*shape, torch.bfloat16, True)
    step = lambda: fwd_bwd_fresh_grads(triton_bigla, xs, do)  # noqa: E731
    for _ in range(10):
        step()
    with torch.no_grad():
        fwd = host_ms(lambda: triton_bigla(*xs), args.calls)
    both = host_ms(step, args.calls)
    lines = [f"{torch.cuda.get_device_name()}, bf16, shape {shape}: host ms per call (no sync inside the loop): "
             f"fwd {fwd:.3f}, fwd+bwd {both:.3f}"]
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.calls):
        step()
    prof.disable()
    torch.cuda.synchronize()
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(key).print_stats(35)
        lines.append(f"=== sorted by {key} ({args.calls} fwd+bwd calls) ===\n{s.getvalue()}")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(lines[0])


if __name__ == "__main__":
    main()
