#!/usr/bin/env bash
# Device call 3 (~9 min): session 20's untimed opt-ins, then the compiled step's kernel profile and fp32's chunk
# backward with ieee FMA dots against the opt-in 3xtf32 dots (VIG_BIGLA_FP32_BWD_PREC).
# 1. bench_fused_layers: the gate backward's persistent grids and the fused residual add + RMSNorm against the
#    current kernels and inductor's code.
# 2. ViG-T training: default, VIG_FUSED_ON=add_rmsnorm, and the fastest persistent gate grid (VIG_GATE_BWD) when
#    the micro-benchmark finds one faster than the default tile.
# 3. The profile of ViG-T's compiled training step; the fp32 op, as far as the call's time allows.
#   run: bash benchmarks/device/call3_layers.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step fused_layers 100 python3 benchmarks/bench_fused_layers.py --only gate add_rmsnorm --out "$OUT/fused_layers.json"
gate_bwd=$(python3 benchmarks/device/best_gate_grid.py "$OUT/fused_layers.json" ViG-T 2>>"$OUT/summary.txt")
bench_t train_t_default 90 --train-only vig_tiny
VIG_FUSED_ON=add_rmsnorm bench_t train_t_add_rmsnorm 90 --train-only vig_tiny
[ -n "$gate_bwd" ] && VIG_GATE_BWD=$gate_bwd bench_t "train_t_gate_bwd_${gate_bwd/,/x}" 90 --train-only vig_tiny
step profile 120 python3 benchmarks/profile_models.py --models vig_tiny --modes train --compile-mode default \
  --out "$OUT/profile_vigt_train.json"
step op_fp32 80 python3 benchmarks/bench_bigla.py --dtype fp32 --methods ours --shapes "ViG-T 224,ViG-H-T stage1" \
  --variants tf32x3:VIG_BIGLA_FP32_BWD_PREC=tf32x3 --out "$OUT/op_fp32"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
