#!/usr/bin/env bash
# Device call 26 (~5 min): the GPU tests of the code as it stands after session 45, which no GPU has run yet:
# 1. vig::low_rank_gate (gk_proj's two layers in training, on by default since session 45) at its new default launch
#    (16,384-value tiles; its GPU tests passed in call 27 at the 4,096-value launch it had then);
# 2. the op's saved-key GPU cases after the cross-terms walk's removal (the kernels are restored to their state before
#    session 43 added it);
# 3. the MLP op and tests/models at the final code (session 43 removed the opt-in MLP forms and the SiLU prologue
#    after its call 23 had run tests/layers and tests/models).
# PACK: everything is packed into $OUT/call26.tgz after each step (common.sh).
#   run: bash benchmarks/device/call26_checks.sh      carry: [".whl"]
set -u
PACK=call26 source benchmarks/device/common.sh
step gk_tests 90 python3 -m pytest -q -k cuda tests/layers/test_fused_low_rank_gate.py; keep
step gpu_tests_saved_keys 150 python3 -m pytest -q -k "saved_key" tests/ops/test_triton_gpu.py; keep
step gpu_tests 150 python3 -m pytest -q -k "cuda or gpu" tests/layers/test_fused_linear_swiglu.py tests/models; keep
cat "$OUT/summary.txt"
