#!/usr/bin/env bash
# Device call 36 (~8 min): programmatic dependent launch in the op's chunk backward (VIG_BIGLA_PDL=1, session 52):
# the chunk backward starts while the do-states walk runs, loads its tiles (and, with log-space gates, forms the
# first direction's in-chunk terms), then waits for the walk; the exact-list launch starts during the chunk backward.
# Session 52 ran it once: log-space gates 1.4-1.8% faster at ViG-T/S/B 224, gate logits 1.2-1.5% slower with the
# in-chunk terms early (12 B of spills); the logits' placement is now loads-only (untimed), and the GPU tests then
# covered gate logits only. If both pass and log-space gates stay faster, set config.PDL_BY_DEFAULT.
# 1. Its GPU tests (against the oracle and bit for bit against the plain launch, both gate forms; the saved-key cases).
# 2. The op, plain against PDL in one process, alternated (base2 / pdl2 repeat them: the run's noise).
# 3. ViG-T training (bf16 autocast, bs 256, 224², CUDA graphs) with and without it, one process each: the launch
#    attribute must survive graph capture.
# 4. Call 5's first step: the profiler kernel-sum clock's GPU test (untimed since session 51).
# PACK: everything is packed into $OUT/call36.tgz after each step (common.sh).
#   run: bash benchmarks/device/call36_pdl.sh      carry: [".whl"]
set -u
PACK=call36 source benchmarks/device/common.sh
step pdl_tests 240 python3 -m pytest -v -n 8 -p no:cacheprovider -k "programmatic or saved_key_states" \
  tests/ops/test_triton_gpu.py; keep
grep -E "FAILED|ERROR|passed|failed" "$OUT/pdl_tests.log" | tail -8 | tee -a "$OUT/summary.txt"
step op_pdl 240 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224,ViG-H-T stage1,ViG-T 1024" --variant-methods ours,ours_gate_logits \
  --variants pdl:VIG_BIGLA_PDL=1 base2:VIG_BIGLA_PDL=0 pdl2:VIG_BIGLA_PDL=1 --out "$OUT/op_pdl"; keep
python3 benchmarks/device/compare_op.py "$OUT/op_pdl" | tee "$OUT/op_compare.txt"; keep
VIG_BIGLA_PDL=1 bench_t train_t_pdl 150 --train-only vig_tiny; keep
VIG_BIGLA_PDL=0 bench_t train_t_plain 150 --train-only vig_tiny; keep
step kernel_sum_test 60 python3 -m pytest -q -k kernel_sum tests/bench/test_bench_cli.py; keep
