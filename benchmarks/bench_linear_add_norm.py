"""GPU micro-benchmark of a ViG-T block's last projection + residual add + RMSNorm at inference: the fused kernel
(vig::linear_add_rms_norm, layers/fused/linear_add_norm.py) at each launch against the path it replaces (cuBLAS's
F.linear under bf16 autocast, then inductor's add + RMSNorm, compiled as in the models), at o_proj's K 192 and
down_proj's K 256 into 192 outputs, on 256 images of 196 tokens with an fp32 stream.

GPU-only medians (vig.bench.timing.gpu_ms: CUDA events, 50 calls behind a sleep kernel) and each output's relative
difference from the plain one. Writes JSON to --out.

    python3 benchmarks/bench_linear_add_norm.py --out benchmarks/results/linear_add_norm.json
"""
import argparse
import json
from unittest import mock

import torch
import torch.nn.functional as F

from vig.bench.provenance import code_identity
from vig.bench.runner import write_json
from vig.bench.timing import gpu_ms
from vig.layers.fused import linear_add_norm as kernels
from vig.layers.fused.linear_add_norm_op import linear_add_rms_norm
from vig.layers.norms import rms_norm_reference

TOKENS = 256 * 196
WIDTH = 192
PROJECTIONS = {"o_proj": 192, "down_proj": 256}  # K of ViG-T's two projections that meet a norm
# (BM, warps, stages) at BN 256; the default is kernels.LAUNCHES[256]
LAUNCHES = [(64, 8, 3), (64, 8, 2), (64, 4, 3), (32, 4, 3), (32, 8, 3), (128, 8, 2), (128, 8, 3)]


def _case(k, dev, dtype=torch.bfloat16):
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(TOKENS, k, device=dev, generator=gen).to(dtype)
    w = (torch.randn(WIDTH, k, device=dev, generator=gen) / k ** 0.5).to(dtype)  # weight_pack's cast views
    x = torch.randn(TOKENS, WIDTH, device=dev, generator=gen)
    norm_w = 1 + 0.1 * torch.randn(WIDTH, device=dev, generator=gen)

    def plain_fn(a, w, x, norm_w):
        with torch.autocast(dev.type, dtype, enabled=dtype != torch.float32):
            s = x + F.linear(a, w)
            return s, rms_norm_reference(s, norm_w, 1e-6).to(dtype)
    plain_compiled = torch.compile(plain_fn)

    def plain():
        with torch.no_grad():
            return plain_compiled(a, w, x, norm_w)

    def fused():
        with torch.no_grad():
            return linear_add_rms_norm(a, w, x, norm_w, 1e-6)

    ref = [t.float() for t in plain()]
    row = {"M": TOKENS, "K": k, "N": WIDTH, "plain_ms": gpu_ms(plain, dev),
           "default_launch": list(kernels.launch_for(WIDTH))}
    for launch in [None] + LAUNCHES:
        key = "default" if launch is None else "x".join(map(str, launch))
        table = dict(kernels.LAUNCHES) if launch is None else {**kernels.LAUNCHES, 256: launch}
        with mock.patch.dict(kernels.LAUNCHES, table):
            try:
                got = [t.float() for t in fused()]
                diffs = [float((g - r).norm() / r.norm()) for g, r in zip(got, ref)]
                row[key] = {"ms": gpu_ms(fused, dev), "rel_diff_vs_plain": {"s": diffs[0], "n": diffs[1]}}
            except Exception as e:  # a launch that does not compile is a result, not a crash
                row[key] = {"error": str(e)[:200]}
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("times CUDA kernels: no CUDA device here")
    dev = torch.device("cuda")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": "bf16 autocast, fp32 stream",
              "tokens": TOKENS, **code_identity(), "projections": {}}
    for name, k in PROJECTIONS.items():
        report["projections"][name] = _case(k, dev)
        print(name, json.dumps(report["projections"][name]), flush=True)
    write_json(report, args.out)


if __name__ == "__main__":
    main()
