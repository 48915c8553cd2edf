#!/usr/bin/env bash
# Device call 17 (~7 min): the opt-in residual add + RMSNorm (vig::add_rms_norm) with its backward's new layout
# (84419ec: no tile changes layout inside the loop, one weight-grad row sum at the end) against inductor's code at
# ViG-T / S / B widths; then ViG-T training with it (VIG_FUSED_ON=add_rmsnorm) in its own process beside the default
# and DeiT-T (bf16 autocast, bs 256, 224², CUDA graphs). Session 23 (H200): its backward 0.073-0.143 ms against
# inductor's 0.052 at ViG-T, training 13,483 against 14,031 img/s.
#   run: bash benchmarks/device/call17_add_norm.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step add_norm_layer 120 python3 benchmarks/bench_fused_layers.py --only add_rmsnorm \
  --out "$OUT/fused_layers_add_rmsnorm.json"
bench_t train_t 200 --train-only vig_tiny deit_tiny_patch16_224
VIG_FUSED_ON=add_rmsnorm bench_t train_t_add_norm 130 --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
