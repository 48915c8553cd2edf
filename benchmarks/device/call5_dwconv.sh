#!/usr/bin/env bash
# Device call 5 (~8 min): the mixer's depthwise conv + SiLU as vig::dwconv3x3 (opt-in VIG_FUSED_ON=dwconv_op,
# session 26, untimed): the conv alone against the compiled cuDNN path at ViG-T's and ViG-B's shapes; ViG-T's
# training and inference with it, then without it beside DeiT-T, in the same call; then its GPU tests. If it wins,
# make it a default (drop it from fused.OPT_IN) and time ViG-S / ViG-B with it (call2_train.sh).
#   run: bash benchmarks/device/call5_dwconv.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step dwconv_layers 120 python3 benchmarks/bench_fused_layers.py --only dwconv --out "$OUT/fused_layers_dwconv.json"
VIG_FUSED_ON=dwconv_op bench_t t_dwconv_op 100 --train vig_tiny
bench_t t_default 160 --train vig_tiny deit_tiny_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
step dwconv_tests 60 python3 -m pytest -q -x -p no:cacheprovider tests/layers/test_fused_dwconv_op.py -k cuda -v
