#!/usr/bin/env bash
# Device call 6 (~4 min): the do-states walk's warps, and the op's kernel table. With the saved key states (the
# default since session 29) the backward at ViG-T 224 walks 1,536 do states; walk_warps keeps 2 warps below 16 walks
# an SM. ptxas (triton 3.8, sm_90a; benchmarks/results/kernel_sass_stats_triton38_session29.json): 109 registers
# and 19,456 B of shared memory a program, so 9 programs an SM by registers (1,188 at once: 1.29 waves); at 1 warp
# 168 registers and the same shared memory, 11 an SM (1,452: 1.06 waves); at 4 warps 80 registers, 6 an SM (792:
# 1.94 waves). Untimed.
#   run: bash benchmarks/device/call6_walk_warps.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step op_walk_warps 150 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" \
  --variants w1:VIG_BIGLA_WALK_WARPS=1 w4:VIG_BIGLA_WALK_WARPS=4 \
  --variant-methods ours,ours_gate_logits --out "$OUT/op_walk_warps"
python3 benchmarks/device/compare_op.py "$OUT/op_walk_warps" | tee "$OUT/op_compare.txt"
# the op's kernel table at ViG-T 224 (issue 4 asks for the profile where a target is missed): today's default, the
# 1-warp walk, and the four-walk backward
step profile_op 90 python3 benchmarks/profile_bigla.py --shape 256,196,3,32,64 \
  --variants default: w1:VIG_BIGLA_WALK_WARPS=1 four:VIG_BIGLA_SAVE_KEY_STATES=0 --out "$OUT/profile_op"
