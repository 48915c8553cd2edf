#!/usr/bin/env bash
# Device call 6 (~4 min): the saved key states as the default (session 29), and the seq forward in segments.
#   run: bash benchmarks/device/call6_defaults_and_fwd_segments.sh      carry: [".whl"]
# (Their GPU cases ran in session 29's first call, as the knob's =1 cases: 69 passed; =0 is session 28's default.)
# 1. The op at the 224 shapes, the default beside: the four-walk backward (=0); the forward split into 2 and 4
#    segments (VIG_BIGLA_SEGMENT=112 / 64: the long path's three launches, twice / four times the programs, half /
#    a quarter of the serial steps each; the backward then walks four states, so only their fwd column counts).
# 2. fla-core's two-pass beside ours at ViG-T 224 in one process (cold autotune, ~2 min).
set -u
source benchmarks/device/common.sh
step op_variants 150 python3 benchmarks/bench_bigla.py --methods ours,ours_gate_logits \
  --shapes "ViG-T 224,ViG-S 224,ViG-B 224" \
  --variants four:VIG_BIGLA_SAVE_KEY_STATES=0 seg112:VIG_BIGLA_SEGMENT=112 seg64:VIG_BIGLA_SEGMENT=64 \
  --variant-methods ours,ours_gate_logits --out "$OUT/op_variants"
python3 benchmarks/device/compare_op.py "$OUT/op_variants" | tee "$OUT/op_compare.txt"
export TRITON_CACHE_DIR="$PWD/.tcache" TRITON_CACHE_AUTOTUNING=1
step op_fla 200 python3 benchmarks/bench_bigla.py --methods ours,fla_chunk_two_pass --shapes "ViG-T 224" \
  --out "$OUT/op_fla"
python3 benchmarks/device/compare_op.py "$OUT/op_fla" | tee "$OUT/op_fla_compare.txt"
