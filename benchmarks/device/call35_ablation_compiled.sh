#!/usr/bin/env bash
# Device call 35 (~9 min): Table 3's last row under CUDA graphs (bench_ablation.py --compile-mode reduce-overhead, as
# vig bench times the models), where the eager run (call 5) is bound by the host (session 51: 56 ms of wall clock a
# training step against ~20 ms of kernels). Each variant is compiled inside its op swap; fla's chunk_gla may not trace
# (a failed point is recorded, and the other variants still run).
#   run: bash benchmarks/device/call35_ablation_compiled.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
export TRITON_CACHE_DIR="$PWD/.tcache" TRITON_CACHE_AUTOTUNING=1
step ablation_compiled 560 python3 benchmarks/bench_ablation.py --variants fused two_pass_fla two_pass_torch \
  --compile-mode reduce-overhead --time-limit 520 --out "$OUT" --name ablation_h100_compiled
