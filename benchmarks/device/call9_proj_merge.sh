#!/usr/bin/env bash
# Device call 9 (~9 min, two commands on one warm machine: PART=a then PART=b): the merged inference projections
# (bigla_attn.merged_projections: qkv_proj, gk_proj's first layer and g_proj as one GEMM over the conv output, the
# gate kernel reading g_proj's columns in place). Session 34's 1024² profile had gk_proj's 16-wide first layer at
# 14 us a block (it re-reads the conv output for 2 MB of output) and g_proj's GEMM at 19.5.
#   run: PART=a bash benchmarks/device/call9_proj_merge.sh, then PART=b      carry: [".whl"]
# a: the GPU tests the change touches; ViG-T/S/B inference beside DeiT at 224 (bs 256), each with the merge and
#    without (VIG_FUSED_OFF=proj_merge). b: ViG-T beside DeiT-T at 1024² and 2048² (bs 16), 1024² also without.
set -u
source benchmarks/device/common.sh
part=${PART:-a}
if [ "$part" = a ]; then
  step gpu_tests 150 python3 -m pytest -q -x -p no:cacheprovider tests/models/test_vig_fused_cuda.py \
    tests/layers/test_fused_gate_op.py tests/layers/test_projection_merge.py tests/layers/test_fused_kernels.py \
    tests/layers/test_fused_layers.py -k "not interpreted"
  bench_t infer_t 70 --infer vig_tiny deit_tiny_patch16_224
  VIG_FUSED_OFF=proj_merge bench_t infer_t_off 50 --infer vig_tiny
  bench_t infer_s 70 --infer vig_small deit_small_patch16_224
  VIG_FUSED_OFF=proj_merge bench_t infer_s_off 50 --infer vig_small
  bench_t infer_b 70 --infer vig_base deit_base_patch16_224
  VIG_FUSED_OFF=proj_merge bench_t infer_b_off 50 --infer vig_base
  python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
else
  hires() {  # hires NAME SIZE ITERS SECONDS MODELS...
    local name=$1 size=$2 iters=$3 secs=$4; shift 4
    step "hires_$name" "$secs" python3 -m vig bench --models "$@" --img-sizes "$size" --batch-sizes 16 \
      --dtype bf16 --compile-mode reduce-overhead --warmup 3 --repeats 5 --iters "$iters" --max-seconds-per-point 30 \
      --time-limit $((secs - 10)) --no-flops --no-plots --out "$OUT" --name "models_$name"
  }
  hires 1024 1024 10 100 vig_tiny deit_tiny_patch16_224
  VIG_FUSED_OFF=proj_merge hires 1024_off 1024 10 70 vig_tiny
  hires 2048 2048 3 110 vig_tiny deit_tiny_patch16_224
  VIG_FUSED_OFF=proj_merge hires 2048_off 2048 3 80 vig_tiny
  step profile_1024 120 python3 benchmarks/profile_models.py --models vig_tiny --modes infer --batch 16 \
    --img-size 1024 --compile-mode default --top 30 --out "$OUT/profile_vigt_1024.json"
  python3 benchmarks/device/compare_models.py "$OUT"/models_*.json | tee "$OUT/highres_compare.txt"
fi
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf "call9$part.tgz" --exclude="call9$part.tgz" -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name "call9$part.tgz" ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
