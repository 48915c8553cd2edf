#!/usr/bin/env bash
# Device call 1 (~9.5 min): the op's GPU tests, and the op's untimed variants against the default in one process.
#   run: bash benchmarks/device/call1_op.sh      carry: [".whl"]      (after prepare.sh here)
# 1. The op's GPU tests: every path against the oracle (bf16 / fp16 / fp32), the packed op, the row-sum helper;
#    -v, so each case's result is in the log even if the step's limit stops pytest before its summary (session 24:
#    603 cases with 12 workers and a cold compile cache took 261 s, all passed). New since: the states walk's
#    row-tile triangle dots (VIG_BIGLA_WALK_SCAN=dot) and the forwards' triangle-dot sums (VIG_BIGLA_FWD_SCAN=dot)
#    as path cases; the default walk is dot_t now.
# 2. The op at the six issue-4 shapes: the default (walk dot_t) against walk dot (session 24: 0.89-0.91x cumsum's
#    time at T >= 3136, where dot_t gave 0.95-0.98x), the forwards' triangle-dot sums (untimed; ptxas: shuffles
#    504 -> 270 in the seq forward but spills 36 -> 156 B; 658 -> 402 in ViG-T's chunk forward), both, and the
#    walks split along the state's columns or rows (VIG_BIGLA_WALK_SPLIT_V=2 / 4, VIG_BIGLA_WALK_SPLIT_K=2, untimed;
#    ptxas at ViG-T's backward walk: 168 -> 134 / 106 / 128 registers, 5,424 -> 4,272 / 4,168 / 3,840 instructions
#    per walk, against 2x / 4x / 2x the walks). split4 raises at V = 32 and splitk2 at K = 16 (ViG-H-T stage 1):
#    their rows read as errors there, by design.
#    fla-core's two-pass is call 4: in session 24 its first compile and autotune outlasted a 200 s step.
set -u
source benchmarks/device/common.sh
step gpu_tests 320 python3 -m pytest -v -n 12 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py
grep -cE "PASSED" "$OUT/gpu_tests.log" | sed 's/^/gpu_tests PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20 | tee -a "$OUT/summary.txt"
step op_new 230 python3 benchmarks/bench_bigla.py --methods ours --out "$OUT/op_new" --variant-methods ours \
  --variants wsdot:VIG_BIGLA_WALK_SCAN=dot fsdot:VIG_BIGLA_FWD_SCAN=dot \
  both:VIG_BIGLA_WALK_SCAN=dot,VIG_BIGLA_FWD_SCAN=dot split2:VIG_BIGLA_WALK_SPLIT_V=2 split4:VIG_BIGLA_WALK_SPLIT_V=4 \
  splitk2:VIG_BIGLA_WALK_SPLIT_K=2
python3 benchmarks/device/compare_op.py "$OUT/op_new" | tee "$OUT/op_compare.txt"
