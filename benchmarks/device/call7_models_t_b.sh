#!/usr/bin/env bash
# Device call 7 (~5 min): issue 6's table rows with today's defaults (the saved key states since session 29): ViG-T
# training and inference beside DeiT-T, ViG-B training beside DeiT-B (its memory: the saved states add ~2 GB).
#   run: bash benchmarks/device/call7_models_t_b.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t table_t 200 --train vig_tiny deit_tiny_patch16_224
bench_t train_b 110 --train-only vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
