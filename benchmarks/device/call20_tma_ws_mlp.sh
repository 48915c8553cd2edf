#!/usr/bin/env bash
# Device call 20 (~9 min): the MLP projection op's opt-in TMA kernels (VIG_LINEAR_SWIGLU_TMA=1,
# src/vig/layers/fused/linear_swiglu_tma.py: persistent, warp-specialized, W read with its a / b rows interleaved;
# written in session 41 after the budget was spent, untimed). The question: does ViG-B's MLP forward (0.58 ms,
# ~540 TFLOPS on the block grid) move towards cuBLAS's ~700? GPU tests of the op (both routes), the launch sweep at
# ViG-T/S/B (benchmarks/probe_tma_ws_mlp.py), then ViG-S / B / T inference and ViG-T training with the TMA kernels
# against the defaults, each in its own process (bf16 autocast, bs 256, 224², CUDA graphs). ViG-S / B train on the
# split path (mlp.FUSED_MLP_TRAIN_MAX_DIM); if the TMA dh kernel beats it at K 384 / 768, that route is the next A/B.
#   run: bash benchmarks/device/call20_tma_ws_mlp.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 120 python3 -m pytest -q -x -k cuda tests/layers/test_fused_linear_swiglu.py
step probe_tma 150 python3 benchmarks/probe_tma_ws_mlp.py --out "$OUT/probe_tma_ws_mlp.json"
VIG_LINEAR_SWIGLU_TMA=1 step tma_route 60 python3 benchmarks/device/tma_route_check.py vig_tiny vig_small vig_base
bench_t infer_sb 120 --infer vig_small deit_small_patch16_224 vig_base deit_base_patch16_224
VIG_LINEAR_SWIGLU_TMA=1 bench_t infer_sb_tma 70 --infer vig_small vig_base
bench_t infer_t 80 --infer vig_tiny deit_tiny_patch16_224
VIG_LINEAR_SWIGLU_TMA=1 bench_t infer_t_tma 50 --infer vig_tiny
VIG_LINEAR_SWIGLU_TMA=1 bench_t train_t_tma 60 --train-only vig_tiny
bench_t train_t 60 --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/compare.txt"
cd "$OUT" && tar czf call20.tgz --exclude=call20.tgz .
