#!/usr/bin/env bash
# Device call 6 (~7 min): ViG-T beside DeiT-T (timm, fused SDPA) at 1024² and 2048², bs 16, bf16 autocast,
# inference under CUDA graphs: issue 6's high-resolution targets (>= 1.5x DeiT-T at 1024², >= 4x and peak memory
# <= DeiT-T's at 2048²). Measured so far only on an H200 (session 12: 1.50x / 1.51x, 4.29x), before the fused MLP
# projection (vig::linear_swiglu, session 33), whose forward writes a third of the split path's bytes.
#   run: bash benchmarks/device/call6_highres.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
hires() {  # hires SIZE ITERS SECONDS: one vig bench point per model, JSON $OUT/models_SIZE.json
  step "hires_$1" "$3" python3 -m vig bench --models vig_tiny deit_tiny_patch16_224 --img-sizes "$1" --batch-sizes 16 \
    --dtype bf16 --compile-mode reduce-overhead --warmup 3 --repeats 5 --iters "$2" --max-seconds-per-point 30 \
    --time-limit $(($3 - 10)) --no-flops --no-plots --out "$OUT" --name "models_$1"
}
hires 1024 10 200
hires 2048 3 240
python3 benchmarks/device/compare_models.py "$OUT"/models_*.json | tee "$OUT/highres_compare.txt"
