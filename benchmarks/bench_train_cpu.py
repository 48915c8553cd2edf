"""Time the README's main command on this machine: `vig train --data default --output DIR` (Fashion-MNIST, the
small vig_fmnist model, default recipe) and record wall time, CPU time and the final top-1 on the 10k test set.

    python3 benchmarks/bench_train_cpu.py [--out benchmarks/results] [extra vig train flags...]

Writes OUT/train_fmnist_cpu.json. The CPU count and the 1-minute load average before and after are recorded too,
because on a shared machine other processes slow the run down.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    a, extra = p.parse_known_args()
    run_dir = Path(tempfile.mkdtemp(prefix="vig_fmnist_")) / "fmnist"
    cmd = ["vig", "train", "--data", "default", "--output", str(run_dir), "--no-progress", *extra]
    load_before = os.getloadavg()[0]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode:
        sys.exit(f"vig train failed:\n{res.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    import csv
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    result = {"command": " ".join(["vig", "train", "--data", "default", "--output", "DIR", *extra]),
              "wall_s": round(wall, 1),
              "cpu_user_s": round(usage.ru_utime, 1), "cpu_system_s": round(usage.ru_stime, 1),
              "cpu_count": os.cpu_count(), "load_avg_1min_before": load_before,
              "load_avg_1min_after": os.getloadavg()[0], "top1": summary["final"]["top1"],
              "top5": summary["final"]["top5"], "val_images": 10000, "epochs": summary["epochs"],
              "per_epoch": [{"epoch": int(r["epoch"]), "top1": float(r["top1"]),
                             "epoch_time_s": round(float(r["epoch_time_s"]), 1),
                             "train_img_per_s": round(float(r["train_img_per_s"]), 1)} for r in rows],
              "stdout_tail": res.stdout.strip().splitlines()[-4:]}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_fmnist_cpu.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
