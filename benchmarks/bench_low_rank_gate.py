"""GPU micro-benchmark of gk_proj in training: vig::low_rank_gate (layers/fused/low_rank_gate.py, on by default at
ViG-T's width since session 45) at several tile sizes, warps and grids against the module path (two nn.Linear under
bf16 autocast, compiled as in the models: cuBLAS GEMMs, split-K weight gradients, the bias's column sum), on ViG-T/S's
conv output (256 images of 196 tokens).

Forward alone and forward + backward (the gradients of x, both weights and the bias), GPU-only medians
(vig.bench.timing.gpu_ms: CUDA events behind a sleep kernel), and each gradient's relative difference from the
module path's. Writes JSON to --out.

    python3 benchmarks/bench_low_rank_gate.py --out benchmarks/results/low_rank_gate.json
"""
from unittest import mock

import torch

from vig.bench.micro import micro_main
from vig.bench.timing import gpu_ms
from vig.layers.fused import low_rank_gate as kernels
from vig.layers.fused import low_rank_gate_op as op

TOKENS = 256 * 196
RANK = 16
MODELS = {"ViG-T": 192, "ViG-S": 384}  # widths (the gates are as wide); ViG-B's 768 is above the op's MAX_WIDTH
# (ROW_ELEMENTS, WARPS, the backward's programs an SM, the forward's)
# (4,096, 8, 1, 3) was the first default; session 45's sweep (results/low_rank_gate_h100_session45.json) chose today's
LAUNCHES = [(8192, 8, 1, 2), (4096, 8, 2, 4), (4096, 4, 2, 6), (4096, 8, 1, 3), (4096, 8, 1, 8)]

DEFAULT = (kernels.ROW_ELEMENTS, kernels.WARPS, kernels.BWD_PROGRAMS_PER_SM, kernels.FWD_PROGRAMS_PER_SM)


def _case(dim, dev):
    gen = torch.Generator(device=dev).manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(dim, RANK, bias=False), torch.nn.Linear(RANK, dim)).to(dev)
    x = torch.randn(TOKENS, dim, device=dev, generator=gen).to(torch.bfloat16).requires_grad_()
    dy = torch.randn(TOKENS, dim, device=dev, generator=gen).to(torch.bfloat16)
    params = [x] + list(layers.parameters())
    w0, w1, bias = layers[0].weight, layers[1].weight, layers[1].bias
    plain_compiled = torch.compile(layers)

    def plain(backward=True):
        with torch.autocast("cuda", torch.bfloat16):
            y = plain_compiled(x)
        return torch.autograd.grad(y, params, dy) if backward else y

    def fused(backward=True):
        y = op.low_rank_gate(x, w0, w1, bias)
        return torch.autograd.grad(y, params, dy) if backward else y

    ref = plain()
    row = {"M": TOKENS, "R": RANK, "C": dim, "N": dim, "default_launch": list(DEFAULT),
           "plain": {"fwd_ms": gpu_ms(lambda: plain(False), dev), "fwd_bwd_ms": gpu_ms(plain, dev)}}
    for launch in [None] + LAUNCHES:
        key = "default" if launch is None else "x".join(map(str, launch))
        rows, warps, per_sm, fwd_per_sm = launch or DEFAULT
        with mock.patch.object(kernels, "ROW_ELEMENTS", rows), mock.patch.object(kernels, "WARPS", warps), \
                mock.patch.object(kernels, "BWD_PROGRAMS_PER_SM", per_sm), \
                mock.patch.object(kernels, "FWD_PROGRAMS_PER_SM", fwd_per_sm):
            try:
                got = fused()
                diffs = [float((g.float() - r.float()).norm() / r.float().norm()) for g, r in zip(got, ref)]
                row[key] = {"fwd_ms": gpu_ms(lambda: fused(False), dev), "fwd_bwd_ms": gpu_ms(fused, dev),
                            "rel_diff_vs_plain": dict(zip(("dx", "dw0", "dw1", "db"), diffs))}
            except Exception as e:  # a launch that does not compile is a result, not a crash
                row[key] = {"error": str(e)[:200]}
    return row


def main():
    micro_main(lambda dim, dev, args: _case(dim, dev), MODELS, {"dtype": "bf16 (x, dy), fp32 parameters",
                                                                "tokens": TOKENS})


if __name__ == "__main__":
    main()
