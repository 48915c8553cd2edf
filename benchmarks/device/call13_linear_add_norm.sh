#!/usr/bin/env bash
# Device call 13 (~5 min): a ViG-T block's o_proj / down_proj, residual add and the next RMSNorm as one kernel at
# inference (vig::linear_add_rms_norm, layers/fused/linear_add_norm.py; session 36's ViG-T kernel table: the add +
# RMSNorms ~0.90 ms and cuBLAS's o_proj / down_proj GEMMs inside 0.86 ms of 5.19). GPU tests, the kernel at each launch
# against the compiled plain path, then ViG-T beside DeiT-T with it, without it (VIG_FUSED_OFF=linear_add_norm) in the
# next process, and with it again.
#   run: bash benchmarks/device/call13_linear_add_norm.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_linear_add_norm.py \
  "tests/models/test_vig_fused_cuda.py::test_inference_under_autocast_is_no_worse_than_plain" \
  tests/models/test_vig_fused_cuda.py::test_weight_pack_leaves_inference_unchanged
step bench_lan 90 python3 benchmarks/bench_linear_add_norm.py --out "$OUT/linear_add_norm.json"
bench_t infer_t 60 --infer vig_tiny deit_tiny_patch16_224
VIG_FUSED_OFF=linear_add_norm bench_t infer_t_plain 45 --infer vig_tiny
bench_t infer_t_again 45 --infer vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call13.tgz --exclude=call13.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call13.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
