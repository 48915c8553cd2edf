#!/usr/bin/env bash
# Device call 12 (~4 min): the MLP projection op's persistent forward (VIG_LINEAR_SWIGLU_FWD=persistent, session 37,
# untimed): the tile loop flattened with the K loop, so the next tile's loads overlap this tile's dots (ViG-T's K 192
# gives a block-grid program three K steps: 0.068 ms a call, 0.82 of ViG-T's 5.05 ms inference step, where cuBLAS's
# 592-wide GEMM of the same rows takes 0.030). GPU tests, the block sweep with the persistent rows at ViG-T, then ViG-T
# inference beside DeiT-T with it, and without it in the next process.
#   run: bash benchmarks/device/call12_persistent_mlp.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 90 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_linear_swiglu.py -k cuda
step sweep 100 python3 benchmarks/bench_linear_swiglu.py --models ViG-T --out "$OUT/linear_swiglu_persistent.json"
VIG_LINEAR_SWIGLU_FWD=persistent bench_t infer_t_persistent 60 --infer vig_tiny deit_tiny_patch16_224
bench_t infer_t 40 --infer vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call12.tgz --exclude=call12.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call12.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
