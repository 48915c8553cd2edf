"""GPU micro-benchmark of the V2 stem's head (first conv, LayerNorm2d, SiLU) at inference: the fused kernel
(vig::stem_conv_norm_silu, layers/fused/stem.py) at each launch choice against the path it replaces (conv_as_gemm,
then the norm and the SiLU, compiled by inductor as in the models), bf16 autocast, 256 images at 224².

GPU-only medians (vig.bench.timing.gpu_ms: CUDA events, 50 calls behind a sleep kernel) and the fused output's
relative difference from the plain one. Writes JSON to --out.

    python3 benchmarks/bench_stem.py --out benchmarks/results/stem.json
"""
import os

import torch

from vig.bench.micro import micro_main
from vig.bench.timing import gpu_ms
from vig.layers.embed import V2PatchEmbed, conv_as_gemm, stem_head_fused
from vig.layers.fused.stem import stem_blocks

MODELS = {"ViG-T": 192, "ViG-S": 384, "ViG-B": 768}  # embed dims; the head writes half
# (pixels, warps, stages); ptxas registers (triton 3.8, sm_90a) at 96 / 192 channels: 64/8/3 103 / 175, 64/4/3 221,
# 32/4/3 108 / 168, 128/8/3 191
LAUNCHES = [(64, 8, 3), (64, 4, 3), (32, 4, 3), (64, 8, 2), (128, 8, 3), (32, 8, 3)]


def _case(dim, dev, batch):
    stem = V2PatchEmbed(embed_dim=dim).to(dev).eval()
    x = torch.randn(batch, 3, 224, 224, device=dev)
    head = stem.proj[:3]
    plain = torch.compile(lambda t: head[1:](conv_as_gemm(head[0], t)))

    def run(fn):
        def step():
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
                return fn(x)
        return step
    ref = run(plain)().float()
    row = {"plain_ms": gpu_ms(run(plain), dev), "default_launch": list(stem_blocks(dim // 2))}
    for launch in [None] + LAUNCHES:
        key = "default" if launch is None else "x".join(map(str, launch))
        if launch is not None:
            os.environ["VIG_STEM_LAUNCH"] = ",".join(map(str, launch))
        try:
            got = run(lambda t: stem_head_fused(stem.proj, t))
            diff = (got().float() - ref).norm() / ref.norm()
            row[key] = {"ms": gpu_ms(got, dev), "rel_diff_vs_plain": float(diff)}
        except Exception as e:  # a launch that does not compile is a result, not a crash
            row[key] = {"error": str(e)[:200]}
        os.environ.pop("VIG_STEM_LAUNCH", None)
    return row


def main():
    micro_main(lambda dim, dev, args: _case(dim, dev, args.batch), MODELS,
               lambda args: {"dtype": "bf16 autocast", "batch": args.batch, "img_size": 224},
               add_args=lambda ap: ap.add_argument("--batch", type=int, default=256))


if __name__ == "__main__":
    main()
