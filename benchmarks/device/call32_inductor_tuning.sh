#!/usr/bin/env bash
# Device call 32 (~6 min): inductor's coordinate-descent tuning of its own kernels (the norms, their backwards and
# the elementwise glue around the op, where session 43's kernel table put ~6 ms of ViG-T's step), at reduce-overhead,
# ViG-T beside DeiT-T, each pair in one process (bf16 autocast, bs 256, 224²), beside this machine's plain pairs.
# (Session 50's call 31 tried max-autotune: its GEMM autotuning outran 230 s a model, and its tables put its picks at
# ~1% of either step.)
#   run: bash benchmarks/device/call32_inductor_tuning.sh      carry: [".whl"]
set -u
PACK=call32 source benchmarks/device/common.sh
bench_t train_t_ro 130 --train-only vig_tiny deit_tiny_patch16_224; keep
TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 bench_t train_t_cdt 170 --train-only vig_tiny deit_tiny_patch16_224; keep
bench_t infer_t_ro 70 --infer vig_tiny deit_tiny_patch16_224; keep
TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 bench_t infer_t_cdt 120 --infer vig_tiny deit_tiny_patch16_224; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
