"""Top kernels (torch profiler, device time per step) of inference and training steps of whole models,
optionally under torch.compile: where a model's step spends its GPU time, ViG against DeiT. With --host also
the Python functions with the most host time per step (cProfile), for steps that are host-bound.

  python benchmarks/profile_models.py --models vig_tiny deit_tiny_patch16_224 --compile-mode default \
      --out benchmarks/results/profile_models_<gpu>.json
"""
import argparse
import json

import torch

from vig.bench import runner
from vig.bench.profile import host_functions, model_step, top_kernels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["vig_tiny", "deit_tiny_patch16_224"])
    ap.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (none: eager)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--host", action="store_true", help="also cProfile the host side of each step")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = torch.device("cuda")
    runner.set_cuda_timing_flags(device)
    report = {"env": runner.environment(device), "compile_mode": args.compile_mode, "profiles": []}
    for name in args.models:
        for mode in args.modes:
            model = runner.create_model(name, args.img_size, device=device)
            step_model = torch.compile(model, mode=args.compile_mode) if args.compile_mode else model
            try:
                prof = top_kernels(step_model, mode, args.batch, args.img_size, device, args.dtype,
                                   steps=5, warmup=3, top=args.top)
                if args.host:
                    step = model_step(step_model, mode, args.batch, args.img_size, device, args.dtype)
                    prof["host"] = host_functions(step, device, top=args.top)
                report["profiles"].append({"model": name, **prof})
                print(f"{name} {mode}: {prof['total_ms_per_step']:.2f} ms/step GPU, "
                      f"{prof['kernels_per_step']:.0f} kernels; top: "
                      + "; ".join(f"{r['name'][:50]} {r['self_ms_per_step']:.3f}" for r in prof["top"][:8]),
                      flush=True)
            except Exception as err:  # noqa: BLE001  (a failing model is a result)
                report["profiles"].append({"model": name, "mode": mode,
                                           "error": f"{type(err).__name__}: {str(err)[:300]}"})
            del model, step_model
            torch.cuda.empty_cache()
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
