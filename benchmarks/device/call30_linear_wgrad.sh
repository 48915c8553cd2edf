#!/usr/bin/env bash
# Device call 30 (~4 min): session 49 found one cuBLAS matmul's weight gradient 0.008-0.011 from float64 at the MLP op's
# shapes (ViG-T's width, 25-50k rows) and fixed the op; the models' plain nn.Linear layers (ViG's and DeiT's qkv / in,
# out and fc projections) train through the same kind of matmul. Each token-level shape of ViG-T/S and DeiT-T/S, its
# weight gradient through F.linear's backward and through the op's chunked weight_grad, at bs 128 and 256 of 224²,
# bf16 and fp16, against float64 (one JSON line a point).
#   run: bash benchmarks/device/call30_linear_wgrad.sh      carry: [".whl"]
set -u
source benchmarks/device/common.sh
step linears 240 python3 benchmarks/device/mlp_dw_precision.py --rows 25088,50176 \
  --linears vig_tiny,deit_tiny_patch16_224,vig_small,deit_small_patch16_224
grep -h '^{' "$OUT/linears.log" > "$OUT/linear_wgrad.jsonl"
python3 -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f\"{r['model']:24s} {r['out']:5d}x{r['in']:<5d} {r['rows']:6d} {r['dtype']:9s} F.linear {r['f_linear']:.4f}  weight_grad {r['weight_grad']:.4f}\")
" "$OUT/linear_wgrad.jsonl" | tee "$OUT/linear_wgrad.txt"
