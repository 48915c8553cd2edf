#!/usr/bin/env bash
# Device call 19 (~8 min): the MLP projection op with one [BM, 2 BN] dot over interleaved W rows (ONE_DOT, session
# 41). Session 41's ViG-B inference table had linear_swiglu_fwd_kernel at 7.33 of 26.0 ms (~540 TFLOPS, two
# [BM, BN] dots a K step) against cuBLAS's ~700 on DeiT-B's GEMMs. GPU tests of the op (both forms), the block sweep
# at ViG-T/S/B's MLPs, then ViG-T/S/B inference with each K class's fastest one-dot forward block against the
# defaults, each in its own process (bf16 autocast, bs 256, 224², CUDA graphs).
#   run: bash benchmarks/device/call19_one_dot_mlp.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 150 python3 -m pytest -q -x -k cuda tests/layers/test_fused_linear_swiglu.py
step sweep 240 python3 benchmarks/bench_linear_swiglu.py --out "$OUT/linear_swiglu_one_dot.json" \
  --blocks 64x64x64x4x2 128x64x64x4x3 64x64x64x4x2x1 64x64x32x4x4x1 128x64x64x4x3x1 128x64x64x8x3x1 \
  128x128x64x8x3x1 128x128x64x8x4x1 128x128x32x8x4x1
# the fastest one-dot forward per K class (ViG-T: K <= 256; ViG-B for the larger class), "small/large"
FWD=$(python3 - "$OUT/linear_swiglu_one_dot.json" <<'PY'
import json, sys
models = json.load(open(sys.argv[1]))["models"]
def best(name):
    rows = {k: v for k, v in models[name].items() if k.endswith("x1") and "fwd_ms" in v}
    return min(rows, key=lambda k: rows[k]["fwd_ms"])
print(f"{best('ViG-T')}/{best('ViG-B')}")
PY
)
echo "one-dot forward blocks: $FWD" | tee -a "$OUT/summary.txt"
bench_t infer_t 150 --infer vig_tiny deit_tiny_patch16_224
VIG_LINEAR_SWIGLU_FWD=$FWD bench_t infer_t_one_dot 90 --infer vig_tiny
bench_t infer_sb 150 --infer vig_small deit_small_patch16_224 vig_base deit_base_patch16_224
VIG_LINEAR_SWIGLU_FWD=$FWD bench_t infer_sb_one_dot 110 --infer vig_small vig_base
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/compare.txt"
cd "$OUT" && tar czf call19.tgz --exclude=call19.tgz .
