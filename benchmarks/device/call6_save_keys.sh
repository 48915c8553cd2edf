#!/usr/bin/env bash
# Device call 6 (~8 min): VIG_BIGLA_SAVE_KEY_STATES=1 (session 28, opt-in, untimed): the seq forward saves the key
# states S^f, S^b for the chunk backward, whose states walk then takes the two do states alone (half its programs:
# one wave at ViG-T 224 against two). Session 28's estimate, not a measurement: ~40 us off ViG-T's 0.432 ms
# fwd+bwd, for 82 MB more saved activations a call. Also times today's default against BASE (prepare.sh's
# default, a9afcb8: the code before the chunk backward took the do states through their own pointer).
#   run: bash benchmarks/device/call6_save_keys.sh      carry: [".whl"]      (after prepare.sh here)
# 1. Its GPU cases (T 1 / 17 / 196 / 256, fp32 / bf16 / fp16, log-decay gates and logits; ViG-T's mixer eager and
#    compiled through vig::bigla_packed_saved_keys) and the default's at ViG-T's head dims.
# 2. The op at the 224 shapes, the default against the variant in one process (memory too); then BASE's code.
set -u
source benchmarks/device/common.sh
step gpu_tests 200 python3 -m pytest -v -n 12 --dist loadgroup -p no:cacheprovider tests/ops/test_triton_gpu.py \
  tests/ops/test_bigla_packed.py -k "saved or (test_triton_matches_oracle and K32-V64) or test_cuda"
grep -cE "PASSED" "$OUT/gpu_tests.log" | sed 's/^/gpu_tests PASSED lines: /' | tee -a "$OUT/summary.txt"
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20 | tee -a "$OUT/summary.txt"
shapes="ViG-T 224,ViG-S 224,ViG-B 224"
step op_new 120 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits --shapes "$shapes" \
  --variants savekeys:VIG_BIGLA_SAVE_KEY_STATES=1 --variant-methods ours,ours_gate_logits --out "$OUT/op_new"
python3 benchmarks/device/compare_op.py "$OUT/op_new" | tee "$OUT/op_compare.txt"
if [ -n "${OLD:-}" ]; then
  PYTHONPATH="$OLD" step op_base 100 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
    --shapes "$shapes" --out "$OUT/op_base"
  python3 benchmarks/device/compare_op.py "$OUT/op_new" "$OUT/op_base" | tee "$OUT/op_vs_base.txt"
fi
