#!/usr/bin/env bash
# Device call 1 (~9 min): the op's GPU tests, and the op's untimed variants against the default in one process.
#   run: bash benchmarks/device/call1_op.sh      carry: [".whl"]      (after prepare.sh here)
# 1. The op's GPU tests: every path against the oracle (bf16 / fp16 / fp32), the packed op, the row-sum helper;
#    -v, so each case's result is in the log even if the step's limit stops pytest before its summary (session 23:
#    587 cases with 12 workers and a cold compile cache took about the 270 s it had; none failed).
# 2. The op at the six issue-4 shapes with fla-core's two-pass in the same run (the README's ratios span calls
#    since session 23), and the states walks' in-chunk sums as triangle dots (VIG_BIGLA_WALK_SCAN=dot_t / dot,
#    session 23, untimed: 5,424 against 6,360 SASS instructions, 96 against 880 shuffles at ViG-T's backward).
set -u
source benchmarks/device/common.sh
step gpu_tests 330 python3 -m pytest -v -n 12 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py
grep -cE "PASSED" "$OUT/gpu_tests.log" | sed 's/^/gpu_tests PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20 | tee -a "$OUT/summary.txt"
step op_new 200 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits,fla_chunk_two_pass \
  --out "$OUT/op_new" \
  --variants wsdot_t:VIG_BIGLA_WALK_SCAN=dot_t wsdot:VIG_BIGLA_WALK_SCAN=dot --variant-methods ours_gate_logits
python3 benchmarks/device/compare_op.py "$OUT/op_new" | tee "$OUT/op_compare.txt"
