"""Timing probe for a direction-split chunk backward (one program per direction): the chunk backward kernel
against a copy, generated from its source, that computes only the forward direction and the diagonal (what
one program of such a split would do), same inputs and states. Its outputs are not the op's; only time is read.

  python benchmarks/probe_bwd_direction_split.py --out benchmarks/results/bigla_direction_split_probe.json
"""
import argparse
import importlib.util
import inspect
import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
# the sibling script (same folder)
from bench_bigla import time_ms

from vig.ops.bigla.triton import _chunk_bwd, config, launch

SHAPES = {"ViG-T 224": (256, 196, 3, 32, 64), "ViG-H-T stage1": (128, 3136, 3, 16, 32)}


def one_direction_kernel():
    src = inspect.getsource(_chunk_bwd)
    start = src.index("    dq_b, dk_b, dv_b = _direction(")
    stop = src.index("    # the diagonal")
    src = src[:start] + "    dq_b = dq_f * 0\n    dk_b = dk_f * 0\n    dv_b = dv_f * 0\n" + src[stop:]
    path = os.path.join(tempfile.mkdtemp(), "one_direction_bwd.py")  # triton reads the source from a file
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("one_direction_bwd", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.chunk_bwd_kernel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    half = one_direction_kernel()
    report = {"gpu": torch.cuda.get_device_name(), "dtype": "bf16", "us_per_launch": {}}
    for name, (B, T, H, K, V) in SHAPES.items():
        q, k = torch.randn(2, B, T, H, K, device="cuda").bfloat16()
        v, do = torch.randn(2, B, T, H, V, device="cuda").bfloat16()
        gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, device="cuda")) / 16
        _, _, C, prec, warps = config._chunk_cfg(q, v, True)
        NT = -(-T // C)
        st = launch._chunk_states(q, k, v, gf, gb, do, C, NT, 0.1, prec, warps, None)
        outs = [torch.empty_like(x) for x in (q, k, v, gf, gb)]
        call = (q, k, v, gf, gb, do, *outs, st, st, *launch._strides(q, k, v, gf, gb, do), T, H, NT, B * H, 0.1, 1.0)
        kw = dict(K=K, V=V, C=C, PREC=prec, RAW=False, BF16_OPS=config.bf16_operands(prec, v, do, st))
        row = {}
        for label, kern, w in (("both_directions_2_warps", _chunk_bwd.chunk_bwd_kernel, 2),
                               ("both_directions_4_warps", _chunk_bwd.chunk_bwd_kernel, 4),
                               ("one_direction_2_warps", half, 2), ("one_direction_4_warps", half, 4)):
            row[label] = 1e3 * time_ms(lambda: kern[(B * H, NT)](*call, **kw, num_warps=w), 50, warmup=5)
        report["us_per_launch"][name] = row
        print(name, json.dumps(row), flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
