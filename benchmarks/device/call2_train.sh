#!/usr/bin/env bash
# Device call 2 (~6 min): ViG-S / ViG-B inference and ViG-B training beside DeiT-S / DeiT-B with the defaults
# (bf16 autocast, bs 256, 224², CUDA graphs: the issue-6 settings). Last read: ViG-S / B inference in session 38
# (0.924x / 0.893x), ViG-B training in session 29 (0.886x). ViG-T and ViG-S training are call 18's.
#   run: bash benchmarks/device/call2_train.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t infer_sb 200 --infer vig_small deit_small_patch16_224 vig_base deit_base_patch16_224
bench_t train_b 150 --train-only vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/compare.txt"
