#!/usr/bin/env bash
# Device call 34 (~4 min): session 49 found cuBLAS's one-matmul MLP weight gradient 0.008-0.011 from float64 at 25,091
# and 50,179 rows and summed it in row chunks since; session 51's call 30 found plain F.linear's at 50,176 rows (ViG-T's
# bs 256) at 0.0017. Here: one matmul against weight_grad's chunks at aligned and unaligned row counts (error, ms),
# weight_grad's GPU tests (aligned counts now take one matmul), and ViG-T training with the aligned matmul (the default)
# beside the chunks (VIG_FUSED_OFF=dw_aligned_mm) and DeiT-T.
#   run: bash benchmarks/device/call34_dw_alignment.sh      carry: [".whl"]
set -u
PACK=call34 source benchmarks/device/common.sh
step dw_rows 120 python3 benchmarks/device/mlp_dw_precision.py --chunked --dims 192,384,768 \
  --rows 25088,25091,49980,50176,50179,50180,50184,50192,50208; keep
step dw_tests 90 python3 -m pytest -q -k weight_grad tests/layers/test_fused_linear_swiglu.py; keep
VIG_FUSED_OFF=dw_aligned_mm bench_t train_vigt_chunks 90 --train-only vig_tiny; keep
bench_t train_t 130 --train-only vig_tiny deit_tiny_patch16_224; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
