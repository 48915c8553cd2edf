#!/usr/bin/env bash
# Device call 4 (~7 min): fla-core's two-pass beside ours in one run, at the six issue-4 shapes, so the README's
# "faster than fla" ratios stop spanning calls (fla's figures are from sessions 13 and 15). Session 24 gave it a
# 200 s step after ours: its first compile and autotune had not finished ViG-T 224 by then, so it gets a call alone.
#   run: bash benchmarks/device/call4_fla.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step op_fla 480 python3 benchmarks/bench_bigla.py --methods ours,fla_chunk_two_pass --out "$OUT/op_fla"
python3 benchmarks/device/compare_op.py "$OUT/op_fla" | tee "$OUT/op_compare.txt"
