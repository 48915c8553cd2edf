#!/usr/bin/env bash
# Device call 11 (~6 min): the V2 stem's first conv + LayerNorm2d + SiLU as one kernel at inference
# (layers/fused/stem.py; session 36's ViG-T kernel table gave the path it replaces 0.26 of 5.19 ms). GPU tests (the
# fp32 launch, fixed in 0237266, has not run on a GPU), the head alone at each launch choice against the compiled
# plain path, then ViG-T beside DeiT-T with the default and, in the next process, VIG_FUSED_OFF=stem_op; ViG-S and
# ViG-B beside DeiT-S / DeiT-B (ViG-B's stem launch is untimed).
#   run: bash benchmarks/device/call11_stem.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_stem.py \
  tests/models/test_vig_fused_cuda.py -k "not add_rmsnorm"
step bench_stem 90 python3 benchmarks/bench_stem.py --models ViG-T ViG-S --out "$OUT/stem.json"
bench_t infer_t 60 --infer vig_tiny deit_tiny_patch16_224
VIG_FUSED_OFF=stem_op bench_t infer_t_plain_stem 40 --infer vig_tiny
bench_t infer_s 55 --infer vig_small deit_small_patch16_224
bench_t infer_b 65 --infer vig_base deit_base_patch16_224
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call11.tgz --exclude=call11.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call11.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
