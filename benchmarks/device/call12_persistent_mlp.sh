#!/usr/bin/env bash
# Device call 12 (~6 min; its step limits add up to 555 s, under a call's 600): two opt-in forms written in session 37, untimed.
# - The MLP projection op's kernels as persistent grids (VIG_LINEAR_SWIGLU_GRID=persistent, K <= 256): the tile loop
#   flattened with the K loop, so the next tile's loads overlap this tile's dots (ViG-T's K 192 gives a block-grid
#   program three K steps: 0.068 ms a forward call, 0.82 of ViG-T's 5.05 ms inference step, where cuBLAS's 592-wide
#   GEMM of the same rows takes 0.030).
# - gk_proj's second layer as one Triton kernel (VIG_FUSED_ON=gk_proj_op, vig::low_rank_linear: cuBLAS runs that
#   K = 16 GEMM at ~1.2 TB/s, 0.193 of ViG-T's 5.05 ms).
# GPU tests; both micro-benchmarks; ViG-T inference beside DeiT-T with the persistent grid, then without, then with the
# gk_proj kernel; ViG-B inference with and without the gk_proj kernel; ViG-T training with and without the grid.
#   run: bash benchmarks/device/call12_persistent_mlp.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 80 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_linear_swiglu.py \
  tests/layers/test_fused_low_rank.py -k cuda
step sweep 80 python3 benchmarks/bench_linear_swiglu.py --models ViG-T --out "$OUT/linear_swiglu_persistent.json"
step sweep_low_rank 45 python3 benchmarks/bench_low_rank.py --out "$OUT/low_rank.json"
VIG_LINEAR_SWIGLU_GRID=persistent bench_t infer_t_persistent 55 --infer vig_tiny deit_tiny_patch16_224
bench_t infer_t 35 --infer vig_tiny
VIG_FUSED_ON=gk_proj_op bench_t infer_t_gk_proj_op 35 --infer vig_tiny
VIG_FUSED_ON=gk_proj_op bench_t infer_b_gk_proj_op 55 --infer vig_base deit_base_patch16_224
bench_t infer_b 40 --infer vig_base
VIG_LINEAR_SWIGLU_GRID=persistent bench_t train_t_persistent 65 --train-only vig_tiny
bench_t train_t 55 --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call12.tgz --exclude=call12.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call12.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
