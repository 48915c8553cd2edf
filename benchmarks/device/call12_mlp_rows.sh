#!/usr/bin/env bash
# Device call 12 (~5 min): the MLP projection's forward as one program a row block walking every column block
# (layers/fused/linear_swiglu.py, opt-in VIG_LINEAR_SWIGLU_FWD=rows, untimed; written in session 36). The block grid
# takes 0.070 ms a call at ViG-T (0.82 of its 5.19 ms inference step) for ~70 MB of HBM traffic; its programs re-read
# x and W through L2 (~450 MB a call). GPU tests, the block sweep with the rows walk's blocks, then ViG-T and ViG-S
# inference with the rows walk beside the default (the next process) and DeiT.
#   run: bash benchmarks/device/call12_mlp_rows.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 100 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_linear_swiglu.py -k cuda
step sweep 150 python3 benchmarks/bench_linear_swiglu.py --models ViG-T ViG-S --out "$OUT/linear_swiglu_rows.json"
VIG_LINEAR_SWIGLU_FWD=rows bench_t infer_t_rows 60 --infer vig_tiny deit_tiny_patch16_224
bench_t infer_t 40 --infer vig_tiny
VIG_LINEAR_SWIGLU_FWD=rows bench_t infer_s_rows 45 --infer vig_small
bench_t infer_s 40 --infer vig_small
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call12.tgz --exclude=call12.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call12.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
