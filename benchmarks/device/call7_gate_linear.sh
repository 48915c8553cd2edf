#!/usr/bin/env bash
# Device call 7 (~10 min): the mixer's gate + o_proj as one GEMM at inference (vig::gate_linear, session 34): its GPU
# tests, its block sweep against the split path (bench_gate_linear.py), and ViG-T/S/B inference beside DeiT-T/S/B
# (bf16 autocast, bs 256, 224², CUDA graphs), ViG-T also with the op off (VIG_FUSED_OFF=gate_linear) in the same call.
#   run: bash benchmarks/device/call7_gate_linear.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gl_tests 150 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_gate_linear.py \
  tests/test_custom_op_schemas.py tests/models/test_vig_fused_cuda.py
step gl_bench 100 python3 benchmarks/bench_gate_linear.py --out "$OUT/gate_linear.json"
bench_t infer_t 110 --infer vig_tiny deit_tiny_patch16_224
VIG_FUSED_OFF=gate_linear bench_t infer_t_off 70 --infer vig_tiny
bench_t infer_s 110 --infer vig_small deit_small_patch16_224
bench_t infer_b 110 --infer vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf results.tgz --exclude=results.tgz -- * && \
  find . -maxdepth 1 -type f ! -name results.tgz ! -name summary.txt ! -name infer_compare.txt ! -name gpu.txt -delete
