#!/usr/bin/env bash
# Device call 37 (~7 min): programmatic dependent launch on by default for the saved-key route (session 53).
# Session 53's call 36: with log-space gates, PDL's results differed from the kernels compiled without PDL in their
# last bits (within the oracle's tolerance; gate logits were bit-exact), so the bit-for-bit reference is now the
# same PDL kernels launched without the attribute (config.PDL_LAUNCH_ATTRIBUTE), whose waits return at once.
# 1. Those GPU tests (both gate forms; a read before the walk's write would differ from the no-overlap launch).
# 2. The op's GPU test files at the new default (the models' call now launches with PDL).
# 3. The op at the 224 shapes, default against VIG_BIGLA_PDL=0, alternated in one process.
#   run: bash benchmarks/device/call37_pdl_default.sh      carry: [".whl"]
set -u
PACK=call37 source benchmarks/device/common.sh
step pdl_tests 180 python3 -m pytest -v -n 8 -p no:cacheprovider -k "programmatic or saved_key_states" \
  tests/ops/test_triton_gpu.py; keep
grep -E "FAILED|ERROR|passed|failed" "$OUT/pdl_tests.log" | tail -8 | tee -a "$OUT/summary.txt"
step op_default 150 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" --variant-methods ours,ours_gate_logits \
  --variants off:VIG_BIGLA_PDL=0 on2:VIG_BIGLA_PDL= off2:VIG_BIGLA_PDL=0 --out "$OUT/op_default"; keep
python3 benchmarks/device/compare_op.py "$OUT/op_default" | tee "$OUT/op_compare.txt"; keep
step gpu_tests 330 python3 -m pytest -q -n 14 --dist loadgroup -p no:cacheprovider \
  tests/ops/test_triton_gpu.py tests/ops/test_bigla_packed.py tests/ops/test_triton_cumsum_dot.py; keep
tail -2 "$OUT/gpu_tests.log" | tee -a "$OUT/summary.txt"; keep
