#!/usr/bin/env bash
# Device call 1 (~9 min): the op's GPU tests, and the op's untimed variants against the default in one process.
#   run: bash benchmarks/device/call1_op.sh      carry: [".whl"]      (after prepare.sh here)
# 1. The op's GPU tests: every path against the oracle (bf16 / fp16 / fp32), the packed op, the row-sum helper;
#    -v, so each case's result is in the log even if pytest stops before its summary (session 23's runs printed
#    every case, none failed, then hit the step's limit without a summary line).
# 2. The op at the six issue-4 shapes with fla-core's two-pass in the same run (the README's ratios span calls
#    since session 23), and the states walks' in-chunk sums as triangle dots (VIG_BIGLA_WALK_SCAN=dot_t / dot,
#    session 23, untimed: 5,424 against 6,360 SASS instructions, 96 against 880 shuffles at ViG-T's backward).
# 3. BASE's op (prepare.sh's BASE_COMMIT) in its own process, for a regression check.
set -u
source benchmarks/device/common.sh
step gpu_tests 300 python3 -m pytest -v -n 8 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py
grep -cE "PASSED" "$OUT/gpu_tests.log" | sed 's/^/gpu_tests PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20 | tee -a "$OUT/summary.txt"
step op_new 200 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits,fla_chunk_two_pass --out "$OUT/op_new" \
  --variants wsdot_t:VIG_BIGLA_WALK_SCAN=dot_t wsdot:VIG_BIGLA_WALK_SCAN=dot --variant-methods ours_gate_logits
[ -n "${OLD:-}" ] && PYTHONPATH=$OLD step op_base 80 python3 benchmarks/bench_bigla.py \
  --methods ours,ours_gate_logits --out "$OUT/op_base"
python3 benchmarks/device/compare_op.py "$OUT/op_new" "$OUT/op_base" | tee "$OUT/op_compare.txt"
