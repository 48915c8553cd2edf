#!/usr/bin/env bash
# Device call 26 (~7 min): the fused layers' GPU tests, now at both row regimes (session 48: vig::low_rank_gate
# faulted with one tile a program, a regime its GPU test had not reached; its tests, the MLP op's and the gate op's now
# run at 787 rows and at 50,179, ViG at 224², bs 256, where persistent programs own several tiles):
# 1. vig::low_rank_gate at both, and ViG-T's compiled training step;
# 2. the MLP op (both routes, three dtypes, ViG-T's and ViG-B's widths), the gate op, and tests/models.
# The op's saved-key cases are in call 1 (its whole GPU test files).
# PACK: everything is packed into $OUT/call26.tgz after each step (common.sh).
#   run: bash benchmarks/device/call26_checks.sh      carry: [".whl"]
set -u
PACK=call26 source benchmarks/device/common.sh
step gk_tests 150 python3 -m pytest -q -k cuda tests/layers/test_fused_low_rank_gate.py; keep
step gpu_tests 260 python3 -m pytest -q -k "cuda or gpu" tests/layers/test_fused_linear_swiglu.py \
  tests/layers/test_fused_gate_op.py tests/models; keep
cat "$OUT/summary.txt"
