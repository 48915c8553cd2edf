#!/usr/bin/env bash
# Device call 27 (session 45; ~8 min, the timings in the first ~7.5), steps in order of worth so that a call cut
# short keeps what decides the most:
# 1. VIG_BIGLA_CROSS_IN_WALK=1 (call 26's first steps: the op at the three 224² shapes against the default in one
#    process, then ViG-T training with and without it).
# 2. VIG_FUSED_ON=gk_proj_train (session 45, vig::low_rank_gate: gk_proj's two layers in training as one kernel each
#    way): ViG-T training with it, then its micro-benchmark against the module path at ViG-T/S (the comparison of the
#    three training rows is printed here, so a call cut short after it keeps it).
# 3. The GPU tests of both (they matter only where one wins).
# PACK: everything is packed into $OUT/call27.tgz after each step (common.sh).
#   run: bash benchmarks/device/call27_cross_gk.sh      carry: [".whl"]
set -u
PACK=call27 source benchmarks/device/common.sh
step op_cross 130 python3 benchmarks/bench_bigla.py --methods ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" --variant-methods ours_gate_logits --out "$OUT/op_cross" --variants \
  cross:VIG_BIGLA_CROSS_IN_WALK=1 cross_s1:VIG_BIGLA_CROSS_IN_WALK=1,VIG_BIGLA_WALK_STAGES=1; keep
bench_t train_t 90 --train-only vig_tiny; keep
VIG_BIGLA_CROSS_IN_WALK=1 bench_t train_t_cross 70 --train-only vig_tiny; keep
VIG_FUSED_ON=gk_proj_train bench_t train_t_gk 70 --train-only vig_tiny; keep
step gk_bench 90 python3 benchmarks/bench_low_rank_gate.py --out "$OUT/low_rank_gate.json"; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
step gk_tests 90 python3 -m pytest -q -k cuda tests/layers/test_fused_low_rank_gate.py; keep
step gpu_tests_cross 100 python3 -m pytest -q -k "saved_key" tests/ops/test_triton_gpu.py; keep
