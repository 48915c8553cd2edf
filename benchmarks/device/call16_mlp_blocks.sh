#!/usr/bin/env bash
# Device call 16 (~5 min): taller blocks for the MLP projection op at ViG-T (session 39). Its forward takes ~0.07 ms
# a call where a GEMM of the same rows alone takes ~0.03; at 64 x 64 tiles each of the 6,272 programs reads 48 KB of
# W through L2 for three K steps. The sweep now has 128- and 256-row blocks; the fastest forward and the fastest
# fwd + bwd rows (that block for both kernels, as the sweep ran it) are then timed in the model, each beside DeiT-T (inference) or alone (training), against the
# defaults in the next process.
#   run: bash benchmarks/device/call16_mlp_blocks.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step sweep 90 python3 benchmarks/bench_linear_swiglu.py --models ViG-T --out "$OUT/linear_swiglu_blocks.json"
read -r FWD BWD < <(python3 - "$OUT/linear_swiglu_blocks.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
row = d["models"]["ViG-T"]
rows = {k: v for k, v in row.items() if isinstance(v, dict) and k[0].isdigit() and "error" not in v}
best = lambda key: min(rows, key=lambda k: rows[k][key]).replace("x", ",")
print(best("fwd_ms"), best("fwd_bwd_ms"))
PY
)
echo "best fwd $FWD, best fwd+bwd $BWD" | tee -a "$OUT/summary.txt"
mlp_t() {  # mlp_t NAME SECONDS FWD DH MODE_FLAG MODELS...
  local name=$1 secs=$2 fwd=$3 dh=$4 mode=$5; shift 5
  local modes=("$mode"); [ "$mode" = --infer ] && modes=()
  step "$name" "$secs" python3 benchmarks/device/with_mlp_blocks.py "$fwd" "$dh" -- bench --models "$@" \
    --img-sizes 224 --batch-sizes 256 --dtype bf16 "${modes[@]}" --compile-mode reduce-overhead --warmup 3 \
    --repeats 5 --iters 10 --max-seconds-per-point 10 --time-limit $((secs - 10)) --no-flops --no-plots --out "$OUT" \
    --name "models_224_$name"
}
mlp_t infer_t_blocks 55 "$FWD" - --infer vig_tiny deit_tiny_patch16_224
mlp_t infer_t 45 - - --infer vig_tiny deit_tiny_patch16_224
mlp_t train_t_blocks 60 "$BWD" "$BWD" --train-only vig_tiny
mlp_t train_t 50 - - --train-only vig_tiny
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json | tee "$OUT/mlp_compare.txt"
cd "$OUT" && tar czf call16.tgz --exclude=call16.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call16.tgz ! -name summary.txt ! -name '*compare.txt' ! -name gpu.txt \
  -exec rm -rf {} +
