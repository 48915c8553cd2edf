#!/usr/bin/env bash
# Device call 26 (~7 min): the GPU tests of gk_proj's op, the op's saved keys, the MLP op and tests/models in one call
# (session 48 ran them in pieces, all passed; the gk step took past 80 s with its 50,179-row cases):
# 1. vig::low_rank_gate (gk_proj's two layers in training, on by default since session 45): 787 and 50,179 rows (one
#    tile a program, where the specialised tile count faulted before session 48's fix, and several), and ViG-T's
#    compiled training step;
# 2. the op's saved-key GPU cases (after session 48 removed the grouped backward);
# 3. the MLP op and tests/models.
# PACK: everything is packed into $OUT/call26.tgz after each step (common.sh).
#   run: bash benchmarks/device/call26_checks.sh      carry: [".whl"]
set -u
PACK=call26 source benchmarks/device/common.sh
step gk_tests 150 python3 -m pytest -q -k cuda tests/layers/test_fused_low_rank_gate.py; keep
step gpu_tests_saved_keys 150 python3 -m pytest -q -k "saved_key" tests/ops/test_triton_gpu.py; keep
step gpu_tests 150 python3 -m pytest -q -k "cuda or gpu" tests/layers/test_fused_linear_swiglu.py tests/models; keep
cat "$OUT/summary.txt"
