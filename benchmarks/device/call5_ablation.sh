#!/usr/bin/env bash
# Device call 5 (~9 min): Table 3's last row with today's code. ViG-T (bs 256, 224², bf16, eager) with the fused op
# against the direct two-pass form: fla-core's chunk_gla on flipped copies (the official training form), and two
# passes of our torch path. The committed ablation_cuda.json predates the fused layers and has no fla row (its
# autotune outlasted that run); fla's autotune results now go to a cache the warm machine keeps (.tcache), as in call 4.
#   run: bash benchmarks/device/call5_ablation.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
export TRITON_CACHE_DIR="$PWD/.tcache" TRITON_CACHE_AUTOTUNING=1
# the training rows' kernels alone come from torch.profiler's kernel sum (session 51): its GPU check first
step kernel_sum_test 60 python3 -m pytest -q -k kernel_sum tests/bench/test_bench_cli.py
step ablation 500 python3 benchmarks/bench_ablation.py --variants fused two_pass_fla two_pass_torch \
  --time-limit 480 --out "$OUT" --name ablation_h100
