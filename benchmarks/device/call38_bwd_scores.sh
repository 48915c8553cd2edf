#!/usr/bin/env bash
# Device call 38 (~6 min): the chunk backward's in-chunk scores P as bf16 (VIG_BIGLA_BWD_P, session 55; P feeds dv
# alone), and the models' GPU tests (with the dwconv weight-stride CUDA case, session 54).
# 1. The op at the 224 shapes and ViG-H-T stage 1: default, P bf16, P carry, default and P bf16 again, in one
#    process (call-time knobs).
# 2. P's GPU tests (carry and bf16 against the oracle and the default's errors), then tests/models' CUDA tests.
# (Trimmed from a 9-minute plan after five failed starts in session 55: ViG-T training with each went.)
#   run: bash benchmarks/device/call38_bwd_scores.sh      carry: [".whl"]
set -u
PACK=call38 source benchmarks/device/common.sh
step op_scores 220 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224,ViG-H-T stage1" --variant-methods ours,ours_gate_logits \
  --variants p_bf16:VIG_BIGLA_BWD_P=bf16 p_carry:VIG_BIGLA_BWD_P=carry again:VIG_BIGLA_BWD_P=tf32 \
  p_bf16_again:VIG_BIGLA_BWD_P=bf16 --out "$OUT/op_scores"; keep
python3 benchmarks/device/compare_op.py "$OUT/op_scores" | tee "$OUT/op_compare.txt"; keep
step score_tests 150 python3 -m pytest -q -n 8 -p no:cacheprovider -k bwd_scores tests/ops/test_triton_gpu.py; keep
step model_tests 150 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu" tests/models; keep
cat "$OUT/summary.txt"
