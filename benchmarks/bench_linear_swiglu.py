"""GPU micro-benchmark of ViG's MLP input half: gate_proj + SwiGLU as one GEMM each way (vig::linear_swiglu)
against the split path the models ran before (cuBLAS's F.linear, then our SwiGLU kernels), at ViG-T/S/B's MLP
shapes (256 images of 196 tokens), bf16.

Per model: forward (inference, no grad) and forward + backward (dx and dw) of the split path, and of the fused op at
each block choice (BM, BN, BK, warps, stages), both kernels on it; then both at the defaults (FWD_BLOCKS,
BWD_BLOCKS: their own blocks for K <= SMALL_K and above). GPU-only medians
(vig.bench.timing.gpu_ms: CUDA events, 50 calls behind a sleep kernel), peak extra memory of fwd + bwd (what the
step allocates beyond its inputs). Writes JSON to --out.

    python3 benchmarks/bench_linear_swiglu.py --out benchmarks/results/linear_swiglu.json
"""
from unittest import mock

import torch
import torch.nn.functional as F

from vig.bench.micro import micro_main
from vig.bench.timing import gpu_ms, peak_extra_mib
from vig.layers.fused import linear_swiglu as kernels
from vig.layers.fused.linear_swiglu_op import linear_swiglu
from vig.layers.fused.swiglu import swiglu_fused
from vig.layers.mlp import swiglu_hidden

TOKENS = 256 * 196
MODELS = {"ViG-T": 192, "ViG-S": 384, "ViG-B": 768}
# each row runs both kernels on one block (BM, BN, BK, warps, stages); the backward's own time is fwd_bwd - fwd.
# ptxas (triton 3.8, sm_90a, bf16), registers fwd / dh: 64 x 64 x 64 on 4 warps 127 / 128, 64 x 64 x 32 96 / 126,
# 64 x 32 x 64 64 / 70; 128 x 64 x 64 on 4 warps 255 / 255 (the dh kernel spills), on 8 warps 127 / 136
BLOCKS = [(64, 64, 64, 4, 2), (64, 64, 64, 4, 3), (64, 64, 32, 4, 4), (64, 64, 32, 4, 3), (64, 64, 32, 4, 6),
          (64, 32, 64, 4, 3), (128, 64, 64, 4, 3), (128, 64, 64, 8, 3), (128, 128, 64, 8, 3)]
# Taller blocks, which read W fewer times, were all slower at ViG-T (H100, session 39,
# results/linear_swiglu_h100_session39_tall_blocks.json), fwd / fwd+bwd ms against the default's 0.0706 / 0.264:
# 128 x 64 x 64 (4 warps, 2 stages) 0.0758 / 0.291; 256 x 64 x 64 (8 warps) in 2 / 3 stages 0.093 / 0.331 and
# 0.080 / 0.308; 128 x 32 x 64 0.082 / 0.290; 256 x 32 x 64 0.107 / 0.363.


def _case(dim, dev, blocks_list, dtype=torch.bfloat16):
    hidden = swiglu_hidden(dim, 256)
    x = torch.randn(TOKENS, dim, device=dev, dtype=dtype)
    w = (torch.randn(2 * hidden, dim, device=dev) / dim ** 0.5).to(dtype)
    dy = torch.randn(TOKENS, hidden, device=dev, dtype=dtype)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()

    def split_fwd():
        with torch.no_grad():
            return swiglu_fused(F.linear(x, w), -1)

    def split_train():
        return torch.autograd.grad(swiglu_fused(F.linear(xg, wg), -1), (xg, wg), dy)

    def fused_fwd():
        with torch.no_grad():
            return linear_swiglu(x, w)

    def fused_train():
        return torch.autograd.grad(linear_swiglu(xg, wg), (xg, wg), dy)

    ref = split_fwd().float()
    row = {"M": TOKENS, "K": dim, "N": hidden, "split": {"fwd_ms": gpu_ms(split_fwd, dev),
                                                           "fwd_bwd_ms": gpu_ms(split_train, dev),
                                                           "fwd_bwd_extra_MiB": peak_extra_mib(split_train, dev)}}
    row["default"] = {"fwd_ms": gpu_ms(fused_fwd, dev), "fwd_bwd_ms": gpu_ms(fused_train, dev)}
    for blocks in blocks_list:
        with mock.patch.multiple(kernels, FWD_BLOCKS=(blocks, blocks), BWD_BLOCKS=(blocks, blocks)):
            try:
                diff = (fused_fwd().float() - ref).norm() / ref.norm()
                row["x".join(map(str, blocks))] = {
                    "fwd_ms": gpu_ms(fused_fwd, dev), "fwd_bwd_ms": gpu_ms(fused_train, dev),
                    "fwd_bwd_extra_MiB": peak_extra_mib(fused_train, dev), "rel_diff_vs_split": float(diff)}
            except Exception as e:  # a block that does not compile (shared memory) is a result, not a crash
                row["x".join(map(str, blocks))] = {"error": str(e)[:200]}
    return row


def _block(text):
    return tuple(int(v) for v in text.split("x"))


def main():
    def add_args(ap):
        ap.add_argument("--blocks", nargs="*", type=_block, default=BLOCKS,
                        help="blocks to sweep, each BMxBNxBKxWARPSxSTAGES (default: BLOCKS)")
    micro_main(lambda dim, dev, args: _case(dim, dev, args.blocks), MODELS, {
        "dtype": "bf16", "tokens": TOKENS,
        "default_blocks": {"small_k": kernels.SMALL_K, "fwd": kernels.FWD_BLOCKS, "bwd": kernels.BWD_BLOCKS}},
        add_args)


if __name__ == "__main__":
    main()
