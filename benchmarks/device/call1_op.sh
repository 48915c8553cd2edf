#!/usr/bin/env bash
# Device call 1 (~9 min): is the current chunk backward correct on a GPU, and is it faster than BASE's?
#   run: bash benchmarks/device/call1_op.sh      carry: [".whl"]      (after prepare.sh here)
# 1. The op's GPU tests: every path against the oracle (bf16 / fp16 / fp32), the packed op, the row-sum helper.
#    If they fail on the chunk backward, bisect session 21's commits (newest first): bd71c9c, f410361, 3f5e3f7,
#    b1ae765, 0a7816c (ca0580e is PTX-identical to its parent).
# 2. The op at the six issue-4 shapes, this tree against BASE in the same call, log gates and gate logits,
#    plus variants of the chunk backward: 1 warp, and register caps of 200 / 168.
set -u
source benchmarks/device/common.sh
step gpu_tests 270 python3 -m pytest -q -n 12 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py
step op_new 150 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits --out "$OUT/op_new" \
  --variants bw1:VIG_BIGLA_BWD_WARPS=1 cap200:VIG_BIGLA_MAXNREG=200 cap168:VIG_BIGLA_MAXNREG=168 \
  --variant-methods ours_gate_logits
[ -n "${OLD:-}" ] && PYTHONPATH=$OLD step op_base 100 python3 benchmarks/bench_bigla.py \
  --methods ours,ours_gate_logits --out "$OUT/op_base"
python3 benchmarks/device/compare_op.py "$OUT/op_new" "$OUT/op_base" | tee "$OUT/op_compare.txt"
