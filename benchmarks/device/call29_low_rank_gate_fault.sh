#!/usr/bin/env bash
# Device call 29 (~5 min): vig::low_rank_gate (gk_proj's training op, on by default at ViG-T's width since session 45)
# faulted with an illegal memory access in call 28's GPU tests (787 and 128 rows), at the launch session 45 had timed
# without a fault at 50,176 rows. Find the launch that faults and test the candidates.
# 1. benchmarks/device/low_rank_gate_crash.py: each variant in its own process, forward then backward, 50,176 / 787 /
#    128 rows, CUDA_LAUNCH_BLOCKING=1;
# 2. compute-sanitizer on the launch as it is at 787 rows, where the machine has it;
# 3. the op's GPU tests (tests/layers/test_fused_low_rank_gate.py) with each candidate patched in.
#   run: bash benchmarks/device/call29_low_rank_gate_fault.sh      carry: [".whl"]
set -u
PACK=call29 source benchmarks/device/common.sh
step probe 150 python3 benchmarks/device/low_rank_gate_crash.py; keep
grep -h '"status": "\(ok\|failed\)"' "$OUT/probe.log" | cut -c1-200
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$SAN" ]; then
  step sanitizer 90 "$SAN" --tool memcheck --print-limit 4 python3 benchmarks/device/low_rank_gate_crash.py \
    --variant as_is --rows 787; keep
else
  echo "no compute-sanitizer" | tee -a "$OUT/summary.txt"
fi
for variant in tiles_unspecialized rows4096; do
  step "gk_tests_$variant" 100 python3 -c "
import sys; sys.path.insert(0, 'benchmarks/device')
import pytest, low_rank_gate_crash as probe, vig.layers.fused.low_rank_gate as kernels
for p in probe.patches(kernels, '$variant'): p.start()
sys.exit(pytest.main(['-q', '-k', 'cuda', 'tests/layers/test_fused_low_rank_gate.py']))"
  keep
done
cat "$OUT/summary.txt"
