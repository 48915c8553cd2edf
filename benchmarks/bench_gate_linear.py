"""GPU micro-benchmark of the mixer's output half at inference: the 2D gate + o_proj as one GEMM (vig::gate_linear)
against the split path the models ran before (our gate kernel, then cuBLAS's F.linear), at ViG-T/S/B's shapes (256
images of 196 tokens, heads of 64 channels; ViG-T with its output SiLU), bf16.

Per model: the split path's forward, the op's at each block choice (BM, BN, warps, stages), and the op at its
defaults (gate_linear.launch_blocks). GPU-only medians (vig.bench.timing.gpu_ms: CUDA events, 50 calls behind a
sleep kernel), and each row's relative difference from the split path's output. Writes JSON to --out.

    python3 benchmarks/bench_gate_linear.py --out benchmarks/results/gate_linear.json
"""
import argparse
import json
from unittest import mock

import torch
import torch.nn.functional as F

from vig.bench.provenance import code_identity
from vig.bench.runner import write_json
from vig.bench.timing import gpu_ms
from vig.layers.fused import gate_linear as kernels
from vig.layers.fused.gate import gate_forward
from vig.layers.fused.gate_linear_op import gate_linear

TOKENS = 256 * 196
HEAD = 64
# (width, output SiLU): ViG-T has the mixer's out_act, ViG-S / B do not
MODELS = {"ViG-T": (192, True), "ViG-S": (384, False), "ViG-B": (768, False)}
# (BM, BN, warps, stages); BN 0: the next power of two >= N (each gate value formed once), else column blocks of BN
# ptxas (triton 3.8, sm_90a, bf16, heads of 64), registers / shared KB at ViG-T: 64 x 256 on 8 warps 243 / 40 in 1
# stage, 244 / 104 in 2; on 4 warps 255 / 40; 32 x 256 on 4 warps 255 / 4 (no wgmma at 32 rows); at ViG-B 64 x 128
# on 4 warps 255 / 24, on 8 warps 137 / 24
BLOCKS = [(64, 0, 8, 1), (64, 0, 8, 2), (64, 0, 4, 1), (32, 0, 4, 1), (32, 0, 4, 2), (128, 0, 8, 1),
          (64, 128, 4, 1), (64, 128, 8, 1), (64, 64, 4, 1)]


def _blocks_for(blocks, N):
    bm, bn, warps, stages = blocks
    return bm, bn or max(16, 1 << (N - 1).bit_length()), warps, stages


def _case(dim, out_silu, dev, dtype=torch.bfloat16, head=HEAD):
    o, loc, gp = (torch.randn(TOKENS, dim, device=dev, dtype=dtype) for _ in range(3))
    wg, wl = (1 + 0.1 * torch.randn(head, device=dev) for _ in range(2))
    w = (torch.randn(dim, dim, device=dev) / dim ** 0.5).to(dtype)
    rows = [t.view(-1, head) for t in (o, loc, gp)]

    @torch.no_grad()
    def split():
        return F.linear(gate_forward(*rows, wg, wl, 1e-6, out_silu)[0].view(TOKENS, dim), w)

    @torch.no_grad()
    def fused():
        return gate_linear(o, loc, gp, wg, wl, w, 1e-6, out_silu)

    ref = split().float()
    row = {"M": TOKENS, "C": dim, "N": dim, "D": head, "out_silu": out_silu, "split": {"fwd_ms": gpu_ms(split, dev)},
           "default": {"fwd_ms": gpu_ms(fused, dev), "blocks": kernels.launch_blocks(dim)}}
    for blocks in BLOCKS:
        with mock.patch.object(kernels, "launch_blocks", lambda N, b=blocks: _blocks_for(b, N)):
            try:
                diff = (fused().float() - ref).norm() / ref.norm()
                row["x".join(map(str, blocks))] = {"fwd_ms": gpu_ms(fused, dev), "rel_diff_vs_split": float(diff)}
            except Exception as e:  # a block that does not compile (registers, shared memory) is a result
                row["x".join(map(str, blocks))] = {"error": str(e)[:200]}
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("times CUDA kernels: no CUDA device here")
    dev = torch.device("cuda")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": "bf16", "tokens": TOKENS,
              "default_blocks": {"max_full_n": kernels.MAX_FULL_N, "wide_bn": kernels.WIDE_BN,
                                 "full": kernels.FULL_BLOCK, "wide": kernels.WIDE_BLOCK},
              **code_identity(), "models": {}}
    for name in args.models:
        report["models"][name] = _case(*MODELS[name], dev)
        print(name, json.dumps(report["models"][name]), flush=True)
    write_json(report, args.out)


if __name__ == "__main__":
    main()
