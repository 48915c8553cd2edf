#!/usr/bin/env bash
# Device call 3 (~8 min): ViG-T training with the states walks' triangle-dot sums (VIG_BIGLA_WALK_SCAN=dot_t,
# untimed) against the default; ViG-S / ViG-B inference beside DeiT-S / DeiT-B (session 23 timed their training
# only); the compiled ViG-T training step's kernel profile with the current defaults.
#   run: bash benchmarks/device/call3_models.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t train_t_default 90 --train-only vig_tiny
VIG_BIGLA_WALK_SCAN=dot_t bench_t train_t_walk_scan_dot_t 90 --train-only vig_tiny
bench_t infer_s 100 --infer vig_small deit_small_patch16_224
bench_t infer_b 100 --infer vig_base deit_base_patch16_224
step profile 120 python3 benchmarks/profile_models.py --models vig_tiny --modes train --compile-mode default \
  --out "$OUT/profile_vigt_train.json"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
