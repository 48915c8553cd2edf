#!/usr/bin/env bash
# Device call 7 (~6 min): the 1-warp do-states walk (b61f627) at ViG-T 224 beside fla-core's two-pass, and 1 warp
# for the long shapes' walks.
# - Session 31 (H200, call 6, one process): VIG_BIGLA_WALK_WARPS=1 took ViG-T 224's fwd+bwd from 0.394 to 0.378 ms,
#   so the saved-key route's do-states walk takes 1 warp from 8 walks an SM. fla was not measured on that machine:
#   issue 4's 5x at ViG-T needs it in the same run. w2 forces 2 warps (the old default there) for the A/B.
# - The long shapes' walks keep the 16-an-SM rule (session 17, one H200 run: 1 warp slower at ViG-H-T stage 1).
#   w1 / w2 time them again with today's segmented walks.
#   run: bash benchmarks/device/call7_walk_fla.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
export TRITON_CACHE_DIR="$PWD/.tcache" TRITON_CACHE_AUTOTUNING=1
step op_fla 250 python3 benchmarks/bench_bigla.py --methods ours,fla_chunk_two_pass \
  --shapes "ViG-T 224" --variants w2:VIG_BIGLA_WALK_WARPS=2 --variant-methods ours --out "$OUT/op_fla"
python3 benchmarks/device/compare_op.py "$OUT/op_fla" | tee "$OUT/op_compare_fla.txt"
step op_walks_long 150 python3 benchmarks/bench_bigla.py --methods ours \
  --shapes "ViG-T 1024,ViG-T 2048,ViG-H-T stage1,ViG-H-T stage2,ViG-H-T stage3" \
  --variants w1:VIG_BIGLA_WALK_WARPS=1 w2:VIG_BIGLA_WALK_WARPS=2 --variant-methods ours --out "$OUT/op_walks_long"
python3 benchmarks/device/compare_op.py "$OUT/op_walks_long" | tee "$OUT/op_compare_long.txt"
