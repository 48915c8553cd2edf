#!/usr/bin/env bash
# Device call 4 (~6-9 min): fla-core's two-pass beside ours in one process, at the shapes given (default: the three
# 224 shapes). fla's first compile and autotune take minutes a shape (session 28, H100: 330 s for the three 224
# shapes, 247 s for 1024² and 2048²), so a call covers a few shapes; its autotune results go to a git-ignored cache
# (.tcache, kept while the machine stays warm), so a run cut short can be resumed.
#   run: bash benchmarks/device/call4_fla.sh ["ViG-H-T stage1,ViG-T 1024,ViG-T 2048"]      carry: [".whl"]
set -u
source benchmarks/device/common.sh
export TRITON_CACHE_DIR="$PWD/.tcache" TRITON_CACHE_AUTOTUNING=1
step op_fla 560 python3 benchmarks/bench_bigla.py --methods ours,fla_chunk_two_pass \
  --shapes "${1:-ViG-T 224,ViG-S 224,ViG-B 224}" --out "$OUT/op_fla"
python3 benchmarks/device/compare_op.py "$OUT/op_fla" | tee "$OUT/op_compare.txt"
