#!/usr/bin/env bash
# Device call 3 (~4 min): the compiled ViG-T and DeiT-T inference and training steps' kernel profiles with the current
# defaults, with inductor's code for them (ViG-B inference beside DeiT-B ran in session 28, H100: 9,118 against 10,506 img/s, 0.868x).
#   run: bash benchmarks/device/call3_models.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
# TORCH_LOGS=output_code: inductor's generated code, to name the source of the 24 standalone `_to_copy` + `view`
# kernels a step (0.31 ms of 17.9 in session 23's profile) from their "Source Nodes" comments
TORCH_LOGS=output_code step profile 300 python3 benchmarks/profile_models.py --models vig_tiny deit_tiny_patch16_224 \
  --modes infer train --compile-mode default --top 40 --out "$OUT/profile_t_224.json"
grep -B14 -E "^triton_[a-z]+_fused__to_copy_view_[0-9]+ = async_compile" "$OUT/profile.log" > "$OUT/to_copy_sources.txt"
gzip -f "$OUT/profile.log"
