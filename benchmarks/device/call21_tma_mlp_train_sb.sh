#!/usr/bin/env bash
# Device call 21 (~6 min, after call 20): ViG-S / ViG-B training with the MLP op on its TMA kernels
# (VIG_LINEAR_SWIGLU_TMA=1) at their widths too (VIG_FUSED_MLP_TRAIN_MAX_DIM=1024; by default they train on the split
# path, cuBLAS + the SwiGLU kernels, since the block grid's dh kernel lost there: ViG-B fwd + bwd 2.25 against 1.77
# ms), against the defaults beside DeiT-S / B, each in its own process (bf16 autocast, bs 256, 224², CUDA graphs).
# Worth running if call 20's sweep shows the TMA dh kernel well under the block grid's at K 384 / 768.
#   run: bash benchmarks/device/call21_tma_mlp_train_sb.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
VIG_LINEAR_SWIGLU_TMA=1 VIG_FUSED_MLP_TRAIN_MAX_DIM=1024 step tma_route 60 \
  python3 benchmarks/device/tma_route_check.py vig_small vig_base
bench_t train_s 130 --train-only vig_small deit_small_patch16_224
VIG_LINEAR_SWIGLU_TMA=1 VIG_FUSED_MLP_TRAIN_MAX_DIM=1024 bench_t train_s_tma 80 --train-only vig_small
bench_t train_b 150 --train-only vig_base deit_base_patch16_224
VIG_LINEAR_SWIGLU_TMA=1 VIG_FUSED_MLP_TRAIN_MAX_DIM=1024 bench_t train_b_tma 90 --train-only vig_base
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/compare.txt"
cd "$OUT" && tar czf call21.tgz --exclude=call21.tgz .
