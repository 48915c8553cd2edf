#!/usr/bin/env bash
# Device call 31 (~9 min): issue 6's training pair under torch.compile's max-autotune (inductor autotunes its GEMMs
# and their fused epilogues against cuBLAS, with CUDA graphs), never timed in 49 sessions. Same settings for both
# sides (bf16 autocast, bs 256, 224²). Each model alone under max-autotune (one process each, so one long autotune
# cannot starve the other model of its time limit), then the pair at the usual reduce-overhead in one process, as
# this machine's baseline (last: a call cut short by the budget still returns the new numbers).
#   run: bash benchmarks/device/call31_max_autotune.sh      carry: [".whl"]
set -u
PACK=call31 source benchmarks/device/common.sh
COMPILE_MODE=max-autotune bench_t train_vigt_ma 230 --train-only vig_tiny; keep
COMPILE_MODE=max-autotune bench_t train_deitt_ma 180 --train-only deit_tiny_patch16_224; keep
bench_t train_t_ro 130 --train-only vig_tiny deit_tiny_patch16_224; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_train_vigt_ma.json "$OUT"/models_224_train_deitt_ma.json \
  > "$OUT/compare.txt"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_train_t_ro.json >> "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
