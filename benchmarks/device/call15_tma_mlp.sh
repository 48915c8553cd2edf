#!/usr/bin/env bash
# Device call 15 (~5 min): the MLP projection op's kernels on TMA descriptors (VIG_LINEAR_SWIGLU_TMA=fwd,dh, written
# in session 38 after the budget was spent, untimed). The block grid's forward takes 0.068 ms a call at ViG-T (0.82 of
# its 4.92 ms inference step) where cuBLAS's GEMM of the same rows alone takes ~0.03; neither the row walk nor the
# persistent grid helped (sessions 37-38). TMA loads take the per-thread address math and masks off the K loop.
# GPU tests; the sweep's tma_ rows beside the block rows; ViG-T inference beside DeiT-T with the TMA forward, then
# without; ViG-T training with both TMA kernels, then without.
#   run: bash benchmarks/device/call15_tma_mlp.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 60 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_linear_swiglu.py -k "cuda"
step sweep 60 python3 benchmarks/bench_linear_swiglu.py --models ViG-T --out "$OUT/linear_swiglu_tma.json"
VIG_LINEAR_SWIGLU_TMA=fwd bench_t infer_t_tma 55 --infer vig_tiny deit_tiny_patch16_224
bench_t infer_t 40 --infer vig_tiny deit_tiny_patch16_224
VIG_LINEAR_SWIGLU_TMA=fwd,dh bench_t train_t_tma 60 --train-only vig_tiny
bench_t train_t 50 --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call15.tgz --exclude=call15.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call15.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
