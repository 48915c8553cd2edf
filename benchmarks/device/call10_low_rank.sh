#!/usr/bin/env bash
# Device call 10 (~8 min): the op on low-rank gate rows at inference (ops/bigla/low_rank.py: gk_proj's second layer
# inside the seq forward, so its addmm and the [M, 2 H K] logits go; session 36's ViG-T kernel table gave that addmm
# 0.18 of 5.19 ms). GPU tests, then each ViG beside its DeiT with the default and, in the next process,
# VIG_FUSED_OFF=gate_low_rank; then ViG-T's kernel table with it.
#   run: bash benchmarks/device/call10_low_rank.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 170 python3 -m pytest -q -p no:cacheprovider tests/ops/test_bigla_low_rank.py \
  tests/models/test_vig_fused_cuda.py tests/ops/test_bigla_packed.py -k "cuda"
bench_t infer_t 60 --infer vig_tiny deit_tiny_patch16_224
VIG_FUSED_OFF=gate_low_rank bench_t infer_t_materialized 40 --infer vig_tiny
bench_t infer_s 60 --infer vig_small deit_small_patch16_224
VIG_FUSED_OFF=gate_low_rank bench_t infer_s_materialized 40 --infer vig_small
bench_t infer_b 65 --infer vig_base deit_base_patch16_224
VIG_FUSED_OFF=gate_low_rank bench_t infer_b_materialized 45 --infer vig_base
step prof_t 70 python3 benchmarks/profile_models.py --models vig_tiny --modes infer --compile-mode default --top 40 \
  --out "$OUT/profile_vigt_infer.json"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call10.tgz --exclude=call10.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call10.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
