#!/usr/bin/env bash
# Device call 6 (~5 min): the states walk's occupancy, and the op's kernel table. ptxas (triton 3.8, sm_90a;
# benchmarks/kernel_sass_stats.py prints programs an SM by CUDA's occupancy rules):
# - ViG-T 224's backward walks 1,536 do states (the saved key states, the default since session 29); below 16 walks
#   an SM walk_warps keeps 2 warps: 109 registers and 19,456 B of shared memory, 9 programs an SM, 1,188 at once,
#   2 waves. On 1 warp at triton's 3 stages: 168 registers, 11 an SM by shared memory (the 1 KB a block reserves
#   on top), 1,452 at once, still 2 waves; with VIG_BIGLA_WALK_STAGES=2 (13,312 B): 12 an SM, 1,584, one wave.
# - ViG-S / B walk 3,072 do states on 1 warp: 11 an SM, 3 waves; 2 stages: 12 an SM, 2 waves.
# Untimed. Variants: ws2 (2 stages, every walk), w1 (1 warp), w1ws2 (both).
#   run: bash benchmarks/device/call6_walk_warps.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step op_walks 200 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" \
  --variants ws2:VIG_BIGLA_WALK_STAGES=2 w1:VIG_BIGLA_WALK_WARPS=1 \
  w1ws2:VIG_BIGLA_WALK_WARPS=1,VIG_BIGLA_WALK_STAGES=2 \
  --variant-methods ours,ours_gate_logits --out "$OUT/op_walks"
python3 benchmarks/device/compare_op.py "$OUT/op_walks" | tee "$OUT/op_compare.txt"
# BASE (prepare.sh 74bd573) in its own process: the backward's exact-list count zeroed by the do-states walk (f890e8f)
# instead of a memset launch
[ -n "${OLD:-}" ] && step op_base 90 env PYTHONPATH="$OLD" python3 benchmarks/bench_bigla.py --methods ours \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" --out "$OUT/op_base"
# the op's kernel table at ViG-T 224 (issue 4 asks for the profile where a target is missed): today's default, the
# variants above, and the four-walk backward
step profile_op 120 python3 benchmarks/profile_bigla.py --shape 256,196,3,32,64 \
  --variants default: ws2:VIG_BIGLA_WALK_STAGES=2 w1ws2:VIG_BIGLA_WALK_WARPS=1,VIG_BIGLA_WALK_STAGES=2 \
  four:VIG_BIGLA_SAVE_KEY_STATES=0 --out "$OUT/profile_op"
# the long shapes walk too (their forward and backward walks in local segments)
step op_walks_long 150 python3 benchmarks/bench_bigla.py --methods ours \
  --shapes "ViG-T 1024,ViG-T 2048,ViG-H-T stage1" \
  --variants ws2:VIG_BIGLA_WALK_STAGES=2 --variant-methods ours --out "$OUT/op_walks_long"
python3 benchmarks/device/compare_op.py "$OUT/op_walks_long" | tee "$OUT/op_compare_long.txt"
