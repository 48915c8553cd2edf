#!/usr/bin/env bash
# Device call 5 (~4 min): the mixer's depthwise conv + SiLU as vig::dwconv3x3 (opt-in VIG_FUSED_ON=dwconv_op,
# session 26): the conv alone against the compiled cuDNN path at ViG-T's and ViG-B's shapes, ViG-T's training with
# it and without in the same call, then its GPU tests.
#   run: bash benchmarks/device/call5_dwconv.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step dwconv_layers 90 python3 benchmarks/bench_fused_layers.py --only dwconv --out "$OUT/fused_layers_dwconv.json"
VIG_FUSED_ON=dwconv_op bench_t t_dwconv_op 60 --train-only vig_tiny
bench_t t_default 60 --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
step dwconv_tests 40 python3 -m pytest -q -x -p no:cacheprovider tests/layers/test_fused_dwconv_op.py -k cuda -v
