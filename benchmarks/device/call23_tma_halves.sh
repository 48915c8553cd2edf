#!/usr/bin/env bash
# Device call 23 (~8 min): the MLP op's TMA kernels reading W as its two halves, two dots a K step
# (VIG_LINEAR_SWIGLU_TMA_HALVES=1; written in session 42, untimed), against the default, which interleaves W's rows
# into a copy every call (4.2 us at ViG-T, ~7% of its 0.062 ms forward; 6.0 us at ViG-B). The GPU tests of
# tests/layers and tests/models (59 in 60 s in session 41; now with the MLP op's three routes and the TMA kernels as
# the models' default), the launch sweep with both W forms (benchmarks/probe_tma_ws_mlp.py), then ViG-T/S/B
# inference and ViG-T / S training with and without it, each in its own process (bf16 autocast, bs 256, 224², CUDA
# graphs).
# PACK: everything is packed into $OUT/call23.tgz after each step (common.sh).
#   run: bash benchmarks/device/call23_tma_halves.sh      carry: [".whl"]
set -u
PACK=call23 source benchmarks/device/common.sh
step gpu_tests 150 python3 -m pytest -q -k "cuda or gpu" tests/layers tests/models; keep
step probe_tma 150 python3 benchmarks/probe_tma_ws_mlp.py --out "$OUT/probe_tma_ws_mlp.json"; keep
bench_t infer 140 --infer vig_tiny deit_tiny_patch16_224 vig_small vig_base; keep
VIG_LINEAR_SWIGLU_TMA_HALVES=1 bench_t infer_halves 90 --infer vig_tiny vig_small vig_base; keep
bench_t train 120 --train-only vig_tiny vig_small; keep
VIG_LINEAR_SWIGLU_TMA_HALVES=1 bench_t train_halves 110 --train-only vig_tiny vig_small; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
