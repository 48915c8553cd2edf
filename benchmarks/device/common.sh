# Sourced at the start of every device call (on the device machine, repo root):
#   source benchmarks/device/common.sh
# Installs the carried wheels into /tmp/site, then sets
#   NEW: PYTHONPATH for this tree's code; OLD: for .whl/base (prepare.sh's BASE_COMMIT), when present.
# Every script below writes under $OUT and logs what it ran, so a call cut short still returns its part.
# PACK=NAME (set when sourcing): everything is written under /tmp/res instead, and `keep` packs it into
# $OUT/NAME.tgz (run it after each step), so a call cut short still returns its part as one file.
if [ -n "${PACK:-}" ]; then
  PACKED_TGZ="$OUT/$PACK.tgz"
  export OUT=/tmp/res
  mkdir -p "$OUT"
  keep() { tar czf "$PACKED_TGZ" -C "$OUT" .; }
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed: run benchmarks/device/prepare.sh here and carry .whl" >&2; exit 1; }
export NEW="$PWD/src:/tmp/site"
export OLD="$PWD/.whl/base/src:/tmp/site"
export PYTHONPATH="$NEW"
[ -d .whl/base/src ] || unset OLD
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, timm; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__)" \
  | tee -a "$OUT/gpu.txt"
[ -f .whl/base/COMMIT ] && echo "base $(cat .whl/base/COMMIT)" | tee -a "$OUT/gpu.txt"

# step NAME SECONDS CMD...: one bounded step; its output goes to $OUT/NAME.log and its exit status to the summary.
step() {
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
  tail -3 "$OUT/$name.log"
  return 0
}

# bench_t NAME SECONDS MODE_FLAG MODELS...: `vig bench` at issue 6's settings (bf16 autocast, bs 256, 224², CUDA
# graphs), one point per model and mode (MODE_FLAG: --train, --train-only, or --infer for inference alone);
# JSON $OUT/models_224_NAME.json. COMPILE_MODE=max-autotune (say) replaces reduce-overhead for that step.
bench_t() {
  local name=$1 secs=$2 mode=$3; shift 3
  local modes=("$mode"); [ "$mode" = --infer ] && modes=()
  step "$name" "$secs" python3 -m vig bench --models "$@" --img-sizes 224 --batch-sizes 256 --dtype bf16 \
    "${modes[@]}" \
    --compile-mode "${COMPILE_MODE:-reduce-overhead}" --warmup 3 --repeats 5 --iters 10 --max-seconds-per-point 10 --time-limit $((secs - 10)) \
    --no-flops --no-plots --out "$OUT" --name "models_224_$name"
}
