#!/usr/bin/env bash
# Device call 8 (~9.5 min): fla-core's two-pass beside ours at the three 224 shapes on one H100, in one process.
# Issue 4's 5x fwd+bwd target is defined on an H100; the only same-run 224 ratio so far is session 26's H200
# (4.25x at ViG-T), and session 27's H100 gave fla a larger share of the time at ViG-H-T stage 1 (5.36x there).
# Autotune results go to a git-ignored cache (.tcache), so a cut-short run can resume on a warm machine.
#   run: bash benchmarks/device/call8_fla224.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
export TRITON_CACHE_DIR="$PWD/.tcache" TRITON_CACHE_AUTOTUNING=1
step op_fla224 560 python3 benchmarks/bench_bigla.py --methods ours,fla_chunk_two_pass \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" --out "$OUT/op_fla224"
python3 benchmarks/device/compare_op.py "$OUT/op_fla224" | tee "$OUT/op_compare.txt"
