#!/usr/bin/env bash
# Device call 1 (~9.5 min): the op's GPU tests, and the op's untimed variants against the default in one process.
#   run: bash benchmarks/device/call1_op.sh      carry: [".whl"]      (after prepare.sh here)
# 1. The op's GPU tests: every path against the oracle (bf16 / fp16 / fp32), the packed op, the row-sum helper;
#    -v, so each case's result is in the log even if the step's limit stops pytest before its summary (session 25:
#    683 cases with 12 workers and a cold compile cache took 309 s on an H100, all passed). New since: the walk's
#    row-tile triangle dots are the default; the split walks are removed.
# 2. The op at the six issue-4 shapes: the default against the walk's tl.cumsum sums and the forwards' triangle-dot
#    sums (VIG_BIGLA_FWD_SCAN=dot: session 25, H100, 1.00-1.03x the default's fwd+bwd time, 1.13x the forward at
#    ViG-H-T stage 1; removed if a second run agrees).
#    fla-core's two-pass is call 4: in session 24 its first compile and autotune outlasted a 200 s step.
set -u
source benchmarks/device/common.sh
step gpu_tests 320 python3 -m pytest -v -n 12 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py
grep -cE "PASSED" "$OUT/gpu_tests.log" | sed 's/^/gpu_tests PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20 | tee -a "$OUT/summary.txt"
step op_new 120 python3 benchmarks/bench_bigla.py --methods ours --out "$OUT/op_new" --variant-methods ours \
  --variants wscumsum:VIG_BIGLA_WALK_SCAN=cumsum fsdot:VIG_BIGLA_FWD_SCAN=dot
python3 benchmarks/device/compare_op.py "$OUT/op_new" | tee "$OUT/op_compare.txt"
