#!/usr/bin/env bash
# Device call 12 (~7 min): three opt-in forms written in session 36, untimed. Two of the MLP projection op:
# - the forward as one program a row block walking every column block (VIG_LINEAR_SWIGLU_FWD=rows): the block grid
#   takes 0.070 ms a call at ViG-T (0.82 of its 5.19 ms inference step) for ~70 MB of HBM traffic; its programs
#   re-read x and W through L2 (~450 MB a call);
# - the backward forming dx = dh W in the dh kernel (VIG_LINEAR_SWIGLU_BWD=rows, K <= 256: ViG-T), so cuBLAS's dx
#   GEMM and its read of dh (103 MB a block) go.
# And VIG_FUSED_ON=weight_pack: each block's GEMM / conv weights cast by one cat at inference (six cast kernels a
# block, 0.113 ms of ViG-T's step, would become one).
# GPU tests, the block sweep at ViG-T with both forms' blocks, then ViG-T inference with the rows forward and with
# the weight pack, and training with the dx walk, each beside the default in its own process (its own inductor cache dir: the backward's
# knob is read as the graph is traced, and a warm cache would serve the other setting's graph).
#   run: bash benchmarks/device/call12_mlp_rows.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step gpu_tests 110 python3 -m pytest -q -p no:cacheprovider tests/layers/test_fused_linear_swiglu.py -k cuda
step gpu_tests_pack 60 python3 -m pytest -q -p no:cacheprovider \
  tests/models/test_vig_fused_cuda.py::test_weight_pack_leaves_inference_unchanged
step sweep 100 python3 benchmarks/bench_linear_swiglu.py --models ViG-T --out "$OUT/linear_swiglu_rows.json"
VIG_LINEAR_SWIGLU_FWD=rows bench_t infer_t_rows 60 --infer vig_tiny deit_tiny_patch16_224
bench_t infer_t 40 --infer vig_tiny
VIG_FUSED_ON=weight_pack bench_t infer_t_weight_pack 40 --infer vig_tiny
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dx VIG_LINEAR_SWIGLU_BWD=rows bench_t train_t_dx 70 --train-only vig_tiny
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_default bench_t train_t 60 --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/infer_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call12.tgz --exclude=call12.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call12.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
