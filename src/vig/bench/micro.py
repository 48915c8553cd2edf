"""The command line of the per-model GPU micro-benchmarks in benchmarks/ (bench_linear_swiglu.py, bench_low_rank.py,
bench_stem.py): --out and --models, a clear refusal without CUDA before anything is written, one JSON report."""
import argparse
import json

import torch

from vig.bench.provenance import code_identity
from vig.bench.runner import write_json


def micro_main(case, models, header, add_args=None):
    """Runs case(models[name], device, args) for each --models name and writes {gpu, torch, **header, code, models}
    to --out. add_args(parser) adds a script's own options; header may be a function of the parsed args."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", nargs="*", default=list(models), choices=list(models))
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("times CUDA kernels: no CUDA device here")
    dev = torch.device("cuda")
    if callable(header):
        header = header(args)
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, **header, **code_identity(),
              "models": {}}
    for name in args.models:
        report["models"][name] = case(models[name], dev, args)
        print(name, json.dumps(report["models"][name]), flush=True)
    write_json(report, args.out)
