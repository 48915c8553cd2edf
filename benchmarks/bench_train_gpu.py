"""Training throughput and peak memory of ViG on one GPU, bf16 autocast (issue 5, item 8).

Part A: the bare training step (AdamW, grad clip 5, bf16 autocast) of a model on synthetic ImageNet-sized
batches, after warmup; img/s and torch.cuda.max_memory_allocated.
Part B: `vig train --recipe paper` end to end (timm RandAugment/RandomErasing/Mixup/CutMix, EMA, eval) on
Fashion-MNIST upscaled to 224, one short epoch; its metrics.csv img/s.

    python3 benchmarks/bench_train_gpu.py [--model vig_tiny] [--batch-size 128] [--steps 30] [--out DIR]

Writes DIR/train_gpu_<gpu>.json (DIR: $OUT if set, else benchmarks/results).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def synthetic(model_name, batch, steps, warmup, img_size):
    import timm
    import vig.models  # noqa: F401  registers the vig models
    from timm.utils import dispatch_clip_grad
    from vig.ops.bigla import resolve_backend
    dev = torch.device("cuda")
    model = timm.create_model(model_name).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    x = torch.randn(batch, 3, img_size, img_size, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dispatch_clip_grad(model.parameters(), 5.0)
        opt.step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"model": model_name, "batch_size": batch, "img_size": img_size, "amp": "bf16", "steps": steps,
            "median_step_s": median, "img_per_s": batch / median, "loss_finite": bool(torch.isfinite(loss)),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "bigla_backend": resolve_backend("auto", dev)}


def end_to_end(model_name, batch, data_dir, limit, workers, out):
    cmd = [sys.executable, "-m", "vig", "train", "--model", model_name, "--data", "fashion-mnist", "--recipe", "paper",
           "--img-size", "224", "--epochs", "1", "--batch-size", str(batch), "--limit-train", str(limit),
           "--limit-val", "2000", "--workers", str(workers), "--warmup-epochs", "0", "--amp", "bf16",
           "--output", str(out), "--overwrite", "--no-progress"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        return {"error": res.stderr[-2000:]}
    row = list(csv.DictReader(open(out / "metrics.csv")))[-1]
    return {"command": " ".join(cmd[1:]), "wall_s": time.time() - t0, "train_img_per_s": float(row["train_img_per_s"]),
            "epoch_time_s": float(row["epoch_time_s"]), "top1_after_1_short_epoch": float(row["top1"])}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vig_tiny")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: system, else the fixture)")
    p.add_argument("--limit-train", type=int, default=12800)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results")
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_train_gpu: needs a CUDA GPU")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name()
    result = {"gpu": gpu, "torch": torch.__version__,
              "synthetic": synthetic(a.model, a.batch_size, a.steps, a.warmup, a.img_size)}
    print(json.dumps(result["synthetic"], indent=2), flush=True)
    if not a.skip_end_to_end:
        data_dir = a.data_dir
        if data_dir is None and not Path("/usr/share/datasets/fashion-mnist").is_dir():
            from vig.data.idx import FIXTURE_DIR
            data_dir, a.limit_train = str(FIXTURE_DIR), min(a.limit_train, 500)
        result["end_to_end"] = end_to_end(a.model, a.batch_size, data_dir, a.limit_train, a.workers,
                                          out / "train_gpu_run")
        print(json.dumps(result["end_to_end"], indent=2))
    path = out / f"train_gpu_{gpu.replace(' ', '_')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
