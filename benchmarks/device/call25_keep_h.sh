#!/usr/bin/env bash
# Device call 25 (~6 min, after call 23): ViG-B / ViG-S training with VIG_FUSED_MLP_KEEP_H=1 (written in session 42,
# untimed): past the MLP op's training width limit (ViG-B's 768; ViG-S's 384 with VIG_FUSED_MLP_TRAIN_MAX_DIM=256)
# the TMA forward stores h beside y, so the split path's SwiGLU forward no longer reads h back (ViG-B: 411 MB a layer,
# ~0.12 ms at an H100's bandwidth; benchmarks/probe_tma_ws_mlp.py times both forwards as split_fwd_ms and
# keep_h_fwd_ms), and the backward is the split path's. Against the defaults beside DeiT-B / S, each in its own
# process (bf16 autocast, bs 256, 224², CUDA graphs).
#   run: bash benchmarks/device/call25_keep_h.sh      carry: [".whl"]
set -u
PACK=call25 source benchmarks/device/common.sh
bench_t train_b 150 --train-only vig_base deit_base_patch16_224; keep
VIG_FUSED_MLP_KEEP_H=1 bench_t train_b_keep_h 90 --train-only vig_base; keep
bench_t train_s 110 --train-only vig_small deit_small_patch16_224; keep
VIG_FUSED_MLP_KEEP_H=1 VIG_FUSED_MLP_TRAIN_MAX_DIM=256 bench_t train_s_keep_h 80 --train-only vig_small; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
