"""GPU micro-benchmark of gk_proj's second layer at inference: the kernel (vig::low_rank_linear,
layers/fused/low_rank.py; the default since session 38, VIG_FUSED_OFF=gk_proj_op) at each launch against the addmm
it replaces (cuBLAS, compiled as in the models), on the 16-wide column slice of ViG-T/S/B's merged projections' output (256 images of 196 tokens), bf16.

GPU-only medians (vig.bench.timing.gpu_ms: CUDA events, 50 calls behind a sleep kernel) and the kernel's relative
difference from addmm. Writes JSON to --out.

    python3 benchmarks/bench_low_rank.py --out benchmarks/results/low_rank.json
"""
from unittest import mock

import torch

from vig.bench.micro import micro_main
from vig.bench.timing import gpu_ms
from vig.layers.bigla_attn import stack_width
from vig.layers.fused import low_rank as kernels
from vig.layers.fused.low_rank_op import low_rank_linear

TOKENS = 256 * 196
RANK = 16
MODELS = {"ViG-T": 192, "ViG-S": 384, "ViG-B": 768}  # widths; the gates are as wide (2 key_dim, expand_k 0.5)
LAUNCHES = [(128, 64, 4), (64, 64, 4), (128, 128, 4), (128, 64, 8), (256, 64, 8), (64, 256, 8)]  # (BM, BN, warps)


def _case(dim, dev, dtype=torch.bfloat16):
    gen = torch.Generator(device=dev).manual_seed(0)
    width = stack_width(2 * dim + RANK + dim)  # the merged stack: qkv (2 dim), the rank, g_proj (dim)
    buf = torch.randn(TOKENS, width, device=dev, generator=gen).to(dtype)
    low = buf[:, 2 * dim: 2 * dim + RANK]
    w = (torch.randn(dim, RANK, device=dev, generator=gen) / RANK ** 0.5).to(dtype)
    bias = torch.randn(dim, device=dev, generator=gen)
    plain_compiled = torch.compile(lambda low, w, bias: torch.addmm(bias.to(low.dtype), low, w.t()))

    def plain():
        return plain_compiled(low, w, bias)

    def fused():
        return low_rank_linear(low, w, bias)

    ref = plain().float()
    row = {"M": TOKENS, "R": RANK, "N": dim, "plain_ms": gpu_ms(plain, dev), "default_launch": list(kernels.LAUNCH)}
    for launch in [None] + LAUNCHES:
        key = "default" if launch is None else "x".join(map(str, launch))
        with mock.patch.object(kernels, "LAUNCH", launch or kernels.LAUNCH):
            try:
                diff = (fused().float() - ref).norm() / ref.norm()
                row[key] = {"ms": gpu_ms(fused, dev), "rel_diff_vs_plain": float(diff)}
            except Exception as e:  # a launch that does not compile is a result, not a crash
                row[key] = {"error": str(e)[:200]}
    return row


def main():
    micro_main(lambda dim, dev, args: _case(dim, dev), MODELS, {"dtype": "bf16", "tokens": TOKENS})


if __name__ == "__main__":
    main()
