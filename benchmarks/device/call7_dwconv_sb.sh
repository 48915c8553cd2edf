#!/usr/bin/env bash
# Device call 7 (~7 min), straight after call 5 when the dwconv op wins there: ViG-S and ViG-B training with
# vig::dwconv3x3 (VIG_FUSED_ON=dwconv_op; no SiLU at these sizes, so the backward writes no dz), then without it
# beside DeiT-S / DeiT-B, in the same call.
#   run: bash benchmarks/device/call7_dwconv_sb.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
VIG_FUSED_ON=dwconv_op bench_t s_dwconv_op 70 --train-only vig_small
VIG_FUSED_ON=dwconv_op bench_t b_dwconv_op 70 --train-only vig_base
bench_t s_default 110 --train-only vig_small deit_small_patch16_224
bench_t b_default 110 --train-only vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
