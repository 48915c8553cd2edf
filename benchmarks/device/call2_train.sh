#!/usr/bin/env bash
# Device call 2 (~9 min): ViG-T training with this tree against BASE and beside DeiT-T (bf16 autocast, bs 256,
# 224², CUDA graphs: the issue-6 settings), the compiled step's kernel profile, and fp32's chunk backward with
# ieee FMA dots against the opt-in 3xtf32 dots (VIG_BIGLA_FP32_BWD_PREC).
#   run: bash benchmarks/device/call2_train.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
bench_t() {  # NAME MODELS...: one training-throughput point per model, the issue-6 settings
  local name=$1; shift
  step "$name" 150 python3 -m vig bench --models "$@" --img-sizes 224 --batch-sizes 256 --dtype bf16 --train-only \
    --compile-mode reduce-overhead --warmup 3 --repeats 5 --iters 10 --max-seconds-per-point 10 --time-limit 140 \
    --no-flops --no-plots --out "$OUT" --name "models_224_$name"
}
bench_t train_new vig_tiny deit_tiny_patch16_224
[ -n "${OLD:-}" ] && PYTHONPATH=$OLD bench_t train_base vig_tiny
step profile 150 python3 benchmarks/profile_models.py --models vig_tiny --modes train --compile-mode default \
  --out "$OUT/profile_vigt_train.json"
step op_fp32 90 python3 benchmarks/bench_bigla.py --dtype fp32 --methods ours --shapes "ViG-T 224,ViG-H-T stage1" \
  --variants tf32x3:VIG_BIGLA_FP32_BWD_PREC=tf32x3 --out "$OUT/op_fp32"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/train_compare.txt"
