#!/usr/bin/env bash
# Device call 18 (~9 min): training with the opt-in residual add + RMSNorm op (VIG_FUSED_ON=add_rmsnorm) at its
# backward's new default launch (session 40: 4,096-value tiles, 2 programs an SM, 0.067 ms against inductor's 0.069
# at ViG-T's width; the session's model runs took 2,048 x 4, 0.077 ms, and were even), each in its own process beside
# the default and DeiT (bf16 autocast, bs 256, 224², CUDA graphs): ViG-T, then ViG-S (no ViG-S training row since
# session 39's 0.825x).
#   run: bash benchmarks/device/call18_add_norm_train.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t train_t 200 --train-only vig_tiny deit_tiny_patch16_224
VIG_FUSED_ON=add_rmsnorm bench_t train_t_add_norm 130 --train-only vig_tiny
bench_t train_s 200 --train-only vig_small deit_small_patch16_224
VIG_FUSED_ON=add_rmsnorm bench_t train_s_add_norm 130 --train-only vig_small
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
