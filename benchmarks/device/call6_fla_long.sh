#!/usr/bin/env bash
# Device call 6 (~8 min): fla-core's two-pass beside ours at the three long shapes, in one run. Session 26's call 4
# timed the 224 shapes in one run (4.1-4.25x) and ran out inside fla's first compile and autotune at ViG-H-T stage 1,
# so the long shapes' ratios still span calls (fla from session 13).
#   run: bash benchmarks/device/call6_fla_long.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step op_fla_long 540 python3 benchmarks/bench_bigla.py --methods ours,fla_chunk_two_pass \
  --shapes "ViG-H-T stage1,ViG-T 1024,ViG-T 2048" --out "$OUT/op_fla_long"
python3 benchmarks/device/compare_op.py "$OUT/op_fla_long" | tee "$OUT/op_compare.txt"
