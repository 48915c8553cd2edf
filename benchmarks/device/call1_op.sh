#!/usr/bin/env bash
# Device call 1 (~10 min): the op's GPU tests, the op at the six issue-4 shapes.
#   run: bash benchmarks/device/call1_op.sh      carry: [".whl"]      (after prepare.sh here)
# 1. The op's GPU tests: every path against the oracle (bf16 / fp16 / fp32), the packed op, the row-sum helper;
#    -v, so each case's result is in the log even if the step's limit stops pytest before its summary (session 28:
#    630 passed, 5 skipped in 236 s with 12 workers on an H100; session 32: 632 passed, 6 skipped, 187 s on 14
#    with a warm triton cache, and 466 of them in 320 s cold on 12). Since then the walk's tl.cumsum route and the
#    forwards' triangle-dot sums were removed (two H100 runs each measured them no faster).
# 2. The op at the six issue-4 shapes (fla-core's two-pass is call 4: its first compile and autotune take minutes).
set -u
source benchmarks/device/common.sh
step gpu_tests 480 python3 -m pytest -v -n 14 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py
grep -cE "PASSED" "$OUT/gpu_tests.log" | sed 's/^/gpu_tests PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20 | tee -a "$OUT/summary.txt"
step op_new 120 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits --out "$OUT/op_new"
python3 benchmarks/device/compare_op.py "$OUT/op_new" | tee "$OUT/op_compare.txt"
