#!/usr/bin/env bash
# Device call 8 (~6 min): where ViG-T's 1024² inference step goes, and the op's forward launch knobs at the 1024² and
# 2048² shapes (walk segments, chunk, walk warps). Session 34's H100 call 6 measured ViG-T at 1.463x DeiT-T's img/s at 1024² and 3.858x at 2048² (bs 16,
# bf16, CUDA graphs): issue 6's 1.5x / 4x missed by 2.5% / 3.5% of ViG-T's step. The forward's launch rules at
# T > 256 (local walk segments, 64-token chunks, walk warps) were chosen on an H200.
#   run: bash benchmarks/device/call8_highres_op.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step profile_1024 160 python3 benchmarks/profile_models.py --models vig_tiny --modes infer --batch 16 \
  --img-size 1024 --compile-mode default --top 30 --out "$OUT/profile_vigt_1024.json"
step op_knobs 200 python3 benchmarks/bench_bigla.py --methods ours_gate_logits --shapes "ViG-T 1024,ViG-T 2048" \
  --variant-methods ours_gate_logits --out "$OUT/op_knobs" --variants \
  fseg512:VIG_BIGLA_FWD_WALK_SEGMENT=512 fseg2048:VIG_BIGLA_FWD_WALK_SEGMENT=2048 fchunk32:VIG_BIGLA_CHUNK=32 \
  walkw4:VIG_BIGLA_WALK_WARPS=4
python3 benchmarks/device/compare_op.py "$OUT/op_knobs" | tee "$OUT/op_compare.txt"
# the reply carries at most 8 files: the logs and JSONs travel as one archive
cd "$OUT" && tar czf call8.tgz --exclude=call8.tgz -- * && \
  find . -mindepth 1 -maxdepth 1 ! -name call8.tgz ! -name summary.txt ! -name op_compare.txt ! -name gpu.txt \
  -exec rm -rf {} +
