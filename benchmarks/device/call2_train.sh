#!/usr/bin/env bash
# Device call 2 (~9 min): ViG-T training and inference beside DeiT-T, and training against BASE (bf16 autocast,
# bs 256, 224², CUDA graphs: the issue-6 settings), the compiled step's kernel profile, and fp32's chunk backward with
# ieee FMA dots against the opt-in 3xtf32 dots (VIG_BIGLA_FP32_BWD_PREC).
#   run: bash benchmarks/device/call2_train.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t table_t_new 220 --train vig_tiny deit_tiny_patch16_224
[ -n "${OLD:-}" ] && PYTHONPATH=$OLD bench_t train_t_base 90 --train-only vig_tiny
step profile 150 python3 benchmarks/profile_models.py --models vig_tiny --modes train --compile-mode default \
  --out "$OUT/profile_vigt_train.json"
step op_fp32 90 python3 benchmarks/bench_bigla.py --dtype fp32 --methods ours --shapes "ViG-T 224,ViG-H-T stage1" \
  --variants tf32x3:VIG_BIGLA_FP32_BWD_PREC=tf32x3 --out "$OUT/op_fp32"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
