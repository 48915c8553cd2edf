#!/usr/bin/env bash
# Device call 9 (~6 min): the merged inference projections (bigla_attn.merged_projections: qkv_proj, gk_proj's first
# layer and g_proj as one GEMM over the conv output, the gate kernel reading g_proj's columns in place and adding its
# bias). Session 35 (H100) measured ViG-T +3.9% (224², 1024²) and ViG-S / ViG-B 7% / 5% slower: above 1,024 columns
# inductor padded the stack's row stride and copied the slices the custom ops take. stack_width now pads the stack
# itself to a multiple of 64 columns there, untimed, so ViG-S / B merge only with VIG_FUSED_ON=proj_merge_wide.
#   run: bash benchmarks/device/call9_proj_merge.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 200 python3 -m pytest -q -p no:cacheprovider tests/models/test_vig_fused_cuda.py \
  tests/layers/test_fused_gate_op.py tests/layers/test_projection_merge.py -k "not interpreted"
bench_t infer_s 70 --infer vig_small deit_small_patch16_224
VIG_FUSED_ON=proj_merge_wide bench_t infer_s_wide 50 --infer vig_small
bench_t infer_b 70 --infer vig_base deit_base_patch16_224
VIG_FUSED_ON=proj_merge_wide bench_t infer_b_wide 50 --infer vig_base
# ViG-T's compiled inference step with today's defaults (the merge on): where its 5.45 ms go (session 33's table
# predates the fused MLP projection and the merge)
step prof_t 100 python3 benchmarks/profile_models.py --models vig_tiny --modes infer --compile-mode default --top 40 \
  --out "$OUT/profile_vigt_infer.json"
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call9.tgz --exclude=call9.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call9.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
