#!/usr/bin/env bash
# Device call 28 (~10 min; steps in order of worth, each packed as it ends, so a cut at 600 s loses only the last
# ones): the chunk backward walking groups of chunks (VIG_BIGLA_BWD_GROUP, session 46, opt-in): S^f and dS^b
# carried from chunk to chunk in a program, stored (by the forward and the do-states walk) and read only at each
# group's first chunk. ptxas (sm_90a, triton 3.6, ViG-T's launch): 255 registers with 672 B of spills (392 B
# unrolled) against one chunk a program's 8 B, so only a GPU can say whether the state traffic it saves (a quarter
# of the states at 2, more at 3) outweighs them.
# 1. The op at the three 224² shapes, group 2 as a loop and unrolled and group 3 unrolled (the fewest spills by
#    ptxas) against one chunk a program, one process (bf16, gate logits, GPU ms). Session 47 added 4-warp forms
#    (VIG_BIGLA_BWD_WARPS=4): ptxas spills 4 B at group 2 unrolled and 0 B at group 3 unrolled, where 2 warps spill
#    392 / 568 B, but they issue ~1.5x the warp instructions a chunk (4 warps were 17-25% slower in session 11).
# 2. GPU tests: the saved-key cases with group 2 and the defaults.
# 3. ViG-T training with the setting the op liked best at ViG-T against the default, each in its own process.
# 4. Call 26's gk_proj, MLP-op and model tests.
#   run: bash benchmarks/device/call28_bwd_group.sh      carry: [".whl"]
set -u
PACK=call28 source benchmarks/device/common.sh
step op_groups 220 python3 benchmarks/bench_bigla.py --methods ours_gate_logits --shapes "ViG-T 224,ViG-S 224,ViG-B 224" \
  --variants g2:VIG_BIGLA_BWD_GROUP=2 g2u:VIG_BIGLA_BWD_GROUP=2,VIG_BIGLA_BWD_GROUP_UNROLL=1 \
  g3u:VIG_BIGLA_BWD_GROUP=3,VIG_BIGLA_BWD_GROUP_UNROLL=1 \
  g2uw4:VIG_BIGLA_BWD_GROUP=2,VIG_BIGLA_BWD_GROUP_UNROLL=1,VIG_BIGLA_BWD_WARPS=4 \
  g3uw4:VIG_BIGLA_BWD_GROUP=3,VIG_BIGLA_BWD_GROUP_UNROLL=1,VIG_BIGLA_BWD_WARPS=4 w4:VIG_BIGLA_BWD_WARPS=4 \
  --variant-methods ours_gate_logits --out "$OUT/op_groups"; keep
python3 benchmarks/device/compare_op.py "$OUT/op_groups" | tee "$OUT/op_groups.txt"; keep
step gpu_tests_groups 100 python3 -m pytest -q -x -k "saved_key and (group2 or default)" tests/ops/test_triton_gpu.py; keep
best=$(python3 - "$OUT/op_groups" <<'PY'
import glob, json, sys
rows = json.load(open(sorted(glob.glob(f"{sys.argv[1]}/bigla_*.json"))[0]))["results"]["ViG-T 224"]
env = {"": "", "_g2": "VIG_BIGLA_BWD_GROUP=2", "_g2u": "VIG_BIGLA_BWD_GROUP=2 VIG_BIGLA_BWD_GROUP_UNROLL=1",
       "_g3u": "VIG_BIGLA_BWD_GROUP=3 VIG_BIGLA_BWD_GROUP_UNROLL=1",
       "_g2uw4": "VIG_BIGLA_BWD_GROUP=2 VIG_BIGLA_BWD_GROUP_UNROLL=1 VIG_BIGLA_BWD_WARPS=4",
       "_g3uw4": "VIG_BIGLA_BWD_GROUP=3 VIG_BIGLA_BWD_GROUP_UNROLL=1 VIG_BIGLA_BWD_WARPS=4",
       "_w4": "VIG_BIGLA_BWD_WARPS=4"}
t = {g: rows.get(f"ours_gate_logits{g}", {}).get("fwd_bwd_gpu_ms") for g in env}
print(env[min((v, g) for g, v in t.items() if v)[1]])
PY
)
echo "best group setting at ViG-T 224: '$best'" | tee -a "$OUT/summary.txt"
if [ -n "$best" ]; then
  bench_t vigt_train_default 65 --train-only vig_tiny; keep
  export $best; bench_t vigt_train_group 65 --train-only vig_tiny
  unset VIG_BIGLA_BWD_GROUP VIG_BIGLA_BWD_GROUP_UNROLL VIG_BIGLA_BWD_WARPS
  keep
fi
step gk_tests 80 python3 -m pytest -q -k cuda tests/layers/test_fused_low_rank_gate.py; keep
step gpu_tests_layers_models 120 python3 -m pytest -q -k "cuda or gpu" tests/layers/test_fused_linear_swiglu.py tests/models
keep
cat "$OUT/summary.txt"
