#!/usr/bin/env bash
# Device call 24 (~5 min, after call 23): ViG-T's conv SiLU left to its two consumers at inference
# (VIG_FUSED_ON=silu_prologue, session 43, untimed: bigla_attn.defers_conv_act; the merged projection GEMM takes it on
# each x tile, vig::silu_linear, and the gate kernel on its local branch, loc_silu), so that its own pass (0.168 ms of
# the 4.92 ms step, session 38) goes. First the GEMM alone: benchmarks/probe_silu_linear.py sweeps the kernel's
# launches against F.silu + cuBLAS. Then the GPU tests of the op and the gate, and ViG-T inference beside DeiT-T with
# the route off, on, and on with VIG_LINEAR_SWIGLU_TMA_HALVES=1 (call 23's knob), each in its own process (bf16
# autocast, bs 256, 224², CUDA graphs).
# PACK: everything is packed into $OUT/call24.tgz after each step (common.sh).
#   run: bash benchmarks/device/call24_silu_prologue.sh      carry: [".whl"]
set -u
PACK=call24 source benchmarks/device/common.sh
step probe_silu_linear 90 python3 benchmarks/probe_silu_linear.py --out "$OUT/probe_silu_linear.json"; keep
step gpu_tests 90 python3 -m pytest -q -k cuda tests/layers/test_fused_silu_linear.py tests/layers/test_fused_gate_op.py; keep
bench_t infer_t 90 --infer vig_tiny deit_tiny_patch16_224; keep
VIG_FUSED_ON=silu_prologue bench_t infer_t_silu 70 --infer vig_tiny; keep
VIG_FUSED_ON=silu_prologue VIG_LINEAR_SWIGLU_TMA_HALVES=1 bench_t infer_t_silu_halves 70 --infer vig_tiny; keep
python3 benchmarks/device/compare_models.py "$OUT"/models_224_*.json > "$OUT/compare.txt"; keep
cat "$OUT/compare.txt"
