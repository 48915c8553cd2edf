#!/usr/bin/env bash
# Device call 22 (~8 min): the defaults after session 42 made the MLP op's TMA kernels the route on sm_90
# (linear_swiglu_tma.py; forward at 256 x 128, dh at 128 x 256, session 42's sweep) and moved ViG-S's training through
# the op (mlp.fused_mlp_train_max_dim: 384 there). The op's GPU tests, then ViG-T/S/B beside DeiT-T/S/B, inference and
# training, each pair in one process (bf16 autocast, bs 256, 224², CUDA graphs): the README's table. Last, the
# TMA kernels' calls counted in each model's inference and training step (tma_route_check.py).
# PACK: everything is packed into $OUT/call22.tgz after each step (common.sh).
#   run: bash benchmarks/device/call22_tma_default.sh      carry: [".whl"]
set -u
PACK=call22 source benchmarks/device/common.sh
step gpu_tests 90 python3 -m pytest -q -x -k "cuda and not 50179" tests/layers/test_fused_linear_swiglu.py; keep
bench_t train_t 170 --train vig_tiny deit_tiny_patch16_224; keep
bench_t infer_sb 130 --infer vig_small deit_small_patch16_224 vig_base deit_base_patch16_224; keep
bench_t train_s 110 --train-only vig_small deit_small_patch16_224; keep
bench_t train_b 130 --train-only vig_base deit_base_patch16_224; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
step tma_route 60 python3 benchmarks/device/tma_route_check.py vig_tiny vig_small vig_base; keep
