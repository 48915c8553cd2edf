#!/usr/bin/env bash
# Device call 2 (~10 min): the fused MLP projection's block sweep (bench_linear_swiglu.py); ViG-T training and
# inference beside DeiT-T with the defaults (bf16 autocast, bs 256, 224²,
# CUDA graphs: the issue-6 settings); ViG-S / ViG-B training beside DeiT-S / DeiT-B.
#   run: bash benchmarks/device/call2_train.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step lsw_bench 90 python3 benchmarks/bench_linear_swiglu.py --out "$OUT/linear_swiglu.json"
bench_t table_t_new 200 --train vig_tiny deit_tiny_patch16_224
bench_t train_s 110 --train-only vig_small deit_small_patch16_224
bench_t train_b 110 --train-only vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
