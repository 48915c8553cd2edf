#!/usr/bin/env bash
# Device call 3 (~9 min): session 20's untimed opt-ins, then the S / B rows of the table.
# 1. bench_fused_layers: the gate backward's persistent grids and the fused residual add + RMSNorm against the
#    current kernels and inductor's code.
# 2. ViG-T training: default, VIG_FUSED_ON=add_rmsnorm, and the fastest persistent gate grid (VIG_GATE_BWD) when
#    the micro-benchmark finds one faster than the default tile.
# 3. ViG-S / ViG-B with DeiT-S / DeiT-B, training, as far as the call's time allows.
#   run: bash benchmarks/device/call3_layers.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step fused_layers 120 python3 benchmarks/bench_fused_layers.py --only gate add_rmsnorm --out "$OUT/fused_layers.json"
gate_bwd=$(python3 benchmarks/device/best_gate_grid.py "$OUT/fused_layers.json" ViG-T 2>>"$OUT/summary.txt")
bench_t train_t_default 100 --train-only vig_tiny
VIG_FUSED_ON=add_rmsnorm bench_t train_t_add_rmsnorm 100 --train-only vig_tiny
[ -n "$gate_bwd" ] && VIG_GATE_BWD=$gate_bwd bench_t "train_t_gate_bwd_${gate_bwd/,/x}" 100 --train-only vig_tiny
bench_t train_s 120 --train-only vig_small deit_small_patch16_224
bench_t train_b 120 --train-only vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
