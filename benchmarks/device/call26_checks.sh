#!/usr/bin/env bash
# Device call 26 (~7 min), steps in order of worth so that a call cut short keeps what decides the most:
# 1. VIG_BIGLA_CROSS_IN_WALK=1 (session 43, opt-in, untimed: the do-states walk forms the chunks' cross terms for the
#    chunk backward; ptxas has the walk at 255 registers and 6 programs an SM against 168 and 11, the chunk backward
#    at 2,600 SASS instructions against 3,152; with 1 pipeline stage 8 an SM, and capped at 168 registers 12, with
#    668 B of spills): the op at the 224² shapes against the default in one process (those three launches), then
#    ViG-T training with and without it, then its GPU tests (they matter only if it wins).
# 2. ViG-T beside DeiT-T at inference with the default NCHW input and with channels-last input and weights
#    (--channels-last; DeiT-T's patch-embed conv took 0.84 ms of its 5.15 ms step in cuDNN's implicit_convolve_sgemm
#    in session 43's kernel table), each pair in one process (bf16 autocast, bs 256, 224², CUDA graphs).
# 3. The GPU tests of the MLP op and of the models at the final code, after session 43 removed the opt-in MLP forms
#    (W read as halves, keep-h) and the SiLU prologue (its call 23 ran tests/layers and tests/models before the
#    removal: 72 passed, 2 failed on the SiLU route's test stand-in).
# PACK: everything is packed into $OUT/call26.tgz after each step (common.sh).
#   run: bash benchmarks/device/call26_checks.sh      carry: [".whl"]
set -u
PACK=call26 source benchmarks/device/common.sh
step op_cross 150 python3 benchmarks/bench_bigla.py --methods ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" --variant-methods ours_gate_logits --out "$OUT/op_cross" --variants \
  cross:VIG_BIGLA_CROSS_IN_WALK=1 cross_s1:VIG_BIGLA_CROSS_IN_WALK=1,VIG_BIGLA_WALK_STAGES=1 \
  cross_s1_168:VIG_BIGLA_CROSS_IN_WALK=1,VIG_BIGLA_WALK_STAGES=1,VIG_BIGLA_MAXNREG=states=168; keep
bench_t train_t 100 --train-only vig_tiny; keep
VIG_BIGLA_CROSS_IN_WALK=1 bench_t train_t_cross 70 --train-only vig_tiny; keep
step gpu_tests_cross 120 python3 -m pytest -q -k "saved_key" tests/ops/test_triton_gpu.py; keep
bench_t infer_t 80 --infer deit_tiny_patch16_224 vig_tiny; keep
bench_t infer_t_cl 80 --infer deit_tiny_patch16_224 vig_tiny --channels-last; keep
step gpu_tests 110 python3 -m pytest -q -k "cuda or gpu" tests/layers/test_fused_linear_swiglu.py tests/models; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
