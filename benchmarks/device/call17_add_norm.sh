#!/usr/bin/env bash
# Device call 17 (~8 min): the opt-in residual add + RMSNorm (vig::add_rms_norm) with its kernels' new layout
# (session 40: no tile changes layout, and the backward sums its weight-grad rows once) against inductor's code at
# ViG-T / S / B widths; then ViG-T inference and training with it (VIG_FUSED_ON=add_rmsnorm) in its own process
# beside the default and DeiT-T (bf16 autocast, bs 256, 224², CUDA graphs). Session 23 (H200): its backward
# 0.073-0.143 ms against inductor's 0.052 at ViG-T, training 13,483 against 14,031 img/s.
#   run: bash benchmarks/device/call17_add_norm.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step add_norm_layer 120 python3 benchmarks/bench_fused_layers.py --only add_rmsnorm \
  --out "$OUT/fused_layers_add_rmsnorm.json"
bench_t table_t 240 --train vig_tiny deit_tiny_patch16_224
VIG_FUSED_ON=add_rmsnorm bench_t table_t_add_norm 180 --train vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/compare.txt"
