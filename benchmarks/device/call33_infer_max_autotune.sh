#!/usr/bin/env bash
# Device call 33 (~8 min): inference under torch.compile's max-autotune, ViG-T and DeiT-T (bf16 autocast, bs 256, 224²,
# one process a model), beside this machine's reduce-overhead inference pair. Session 50's call 31 found the training
# steps' GEMM autotuning longer than 230 s a model, and in its tables one pick worth more at inference than in
# training: ViG-T's MLP second layer (50176x512 @ 512x192) at 0.038 ms in a Triton tile against cuBLAS's 0.054, twelve
# times a step (~0.18 ms of ViG-T's ~4.9 ms inference step), against DeiT-T's patch-embed conv (0.63 -> 0.52 ms, once).
# A forward graph has about half the GEMMs to tune.
#   run: bash benchmarks/device/call33_infer_max_autotune.sh      carry: [".whl"]
set -u
PACK=call33 source benchmarks/device/common.sh
COMPILE_MODE=max-autotune bench_t infer_vigt_ma 200 --infer vig_tiny; keep
COMPILE_MODE=max-autotune bench_t infer_deitt_ma 200 --infer deit_tiny_patch16_224; keep
bench_t infer_t_ro 70 --infer vig_tiny deit_tiny_patch16_224; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_infer_vigt_ma.json "$OUT"/models_224_infer_deitt_ma.json \
  > "$OUT/compare.txt"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_infer_t_ro.json >> "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
