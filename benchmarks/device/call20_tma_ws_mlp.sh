#!/usr/bin/env bash
# Device call 20 (~2 min): the MLP projection forward as a persistent, warp-specialized TMA GEMM over W with its a / b
# rows interleaved (benchmarks/probe_tma_ws_mlp.py, written in session 41 after the budget was spent), against the
# block-grid kernel the models run and cuBLAS's GEMM alone, at ViG-T/S/B's MLPs (bf16, 50,176 rows). The question:
# does ViG-B's forward (0.58 ms, ~540 TFLOPS) move towards cuBLAS's ~700? If a launch is >= 10% faster at ViG-S / B,
# the next step is that kernel in linear_swiglu.py with W interleaved once a step by the weight pack.
#   run: bash benchmarks/device/call20_tma_ws_mlp.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step probe_tma 200 python3 benchmarks/probe_tma_ws_mlp.py --out "$OUT/probe_tma_ws_mlp.json"
cd "$OUT" && tar czf call20.tgz --exclude=call20.tgz .
