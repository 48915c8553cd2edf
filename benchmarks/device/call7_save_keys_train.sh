#!/usr/bin/env bash
# Device call 7 (~5 min): ViG-T / ViG-S training with VIG_BIGLA_SAVE_KEY_STATES=1 beside the default, in one call
# (issue 6's settings: bf16 autocast, bs 256, 224², CUDA graphs; the compiled mixer then takes
# vig::bigla_packed_saved_keys). Peak memory matters here too: the knob saves 82 MB more a layer at ViG-T.
# Worth running after call 6 only if the op gained there.
#   run: bash benchmarks/device/call7_save_keys_train.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t t_default 110 --train-only vig_tiny
VIG_BIGLA_SAVE_KEY_STATES=1 bench_t t_save_keys 110 --train-only vig_tiny
bench_t s_default 70 --train-only vig_small
VIG_BIGLA_SAVE_KEY_STATES=1 bench_t s_save_keys 70 --train-only vig_small
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
