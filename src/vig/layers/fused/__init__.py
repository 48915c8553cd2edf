"""Fused CUDA kernels for the layers around the BiGLA op (Triton, imported lazily).

Nothing here imports triton at package import time: `fused_enabled(x)` only checks whether the
fused path may be taken, and callers import `vig.layers.fused.rmsnorm` after that check.
Set VIG_FUSED=0 to force the plain-PyTorch path (used for A/B timings and debugging).
"""
import os

import torch

from vig.ops.knobs import switch

_TRITON = {}
# add_rmsnorm measured slower as an autograd.Function: ViG-T training step on an H100, bf16 bs256, eager, same run
# (session 3): 2,338 img/s with add_rmsnorm and gate_silu, 2,805 without add_rmsnorm, 2,869 without either. Since
# session 20 it is the custom op vig::add_rms_norm (compiled steps call it; one backward pass writes the stream's fp32
# grad and the branch's bf16 grad): H200, session 23, ViG-T training 13,483 against 14,031 img/s. Session 40's
# kernels (no tile changes layout): H100, bf16 bs 256, CUDA graphs, ViG-T training 12,839 against 12,817 img/s,
# inference 49,619 against 49,959 (each in its own process of one call): even, so it stays opt-in.
# gate_silu (ViG-T's output SiLU inside the gate kernel) is on since session 9: H200, bf16 bs256, same code,
# training step eager 4,757 against 4,637 img/s, compiled with CUDA graphs 11,064 against 10,960.
# A Triton depthwise conv + SiLU for the mixer (opt-in dwconv_triton, sessions 10-17) was removed in session 18: both
# versions timed slower than cuDNN's channels-last kernels (H200, bf16, ViG-T training: 10,503 against 11,413 img/s;
# the rewrite's conv alone, fwd + bwd at ViG-T's shape, 1.02-2.34 ms against 0.12; benchmarks/NOTES_bigla.md).
# swiglu_op_channels: ViG-H's channel-split SwiGLU through vig::swiglu (ViG's channel-last one is on since
# session 17, +2.1% ViG-T training); not timed on ViG-H.
# bigla_packed (ops/bigla/packed.py: the mixer's gradients written into the projections' shapes, no cats) is on since
# session 19: H200, bf16 bs256, CUDA graphs, same calls, training ViG-T 13,595 against 13,313 img/s, ViG-S 6,984
# against 6,881, ViG-B 2,966 against 2,910 (VIG_FUSED_OFF=bigla_packed: the split views, for A/B).
# dwconv_shifts (the mixer's depthwise conv as nine shifted multiply-adds for inductor to fuse with its SiLU) was
# removed in session 19: conv + SiLU fwd + bwd 0.340 against cuDNN's 0.117 ms at ViG-T (H200), training 12,152
# against 13,354 img/s.
# dwconv_op (sessions 26-27: the mixer's depthwise conv + SiLU as the custom op vig::dwconv3x3 on plain
# [positions, channels] tiles) was removed in session 28: on an H100, bf16, conv + SiLU fwd + bwd at ViG-T's shape
# took 0.189 against the compiled cuDNN path's 0.131 ms (best grid), and ViG-T training 11,680 against 12,255 img/s
# in one call; inference the same (41,647 against 41,574). Its design and counts: benchmarks/NOTES_bigla.md, session 26.
# linear_swiglu (ViG's gate_proj + SwiGLU as one GEMM each way, vig::linear_swiglu) is on since session 33: H100, bf16
# bs 256, CUDA graphs, ViG-T inference 44,870-44,879 img/s in two calls against 42,121 before (session 32, another
# call), training 12,665-12,734 against 12,623 and 5,206 against 6,382 MiB. ViG-S / B trained on the split path then
# (mlp.fused_mlp_train_max_dim); ViG-S takes the op since session 42, on the TMA kernels below.
# gate_linear (session 34: the mixer's 2D gate formed per head as the K steps of o_proj's GEMM, inference only) was
# removed in session 34: on an H100, bf16, 50,176 rows, its best block took 0.058 ms at ViG-T against the gate kernel +
# cuBLAS's 0.048 (0.12 / 0.88 against 0.091 / 0.195 at ViG-S / B), ViG-T inference 42,034 against 45,521 img/s.
# proj_merge (bigla_attn.merged_projections: the mixer's qkv_proj, gk_proj[0] and g_proj as one GEMM at inference) is on
# since session 35: H100, bf16, ViG-T inference 46,994 against 45,212 img/s at 224² (bs 256), 2,133 against 2,054 at
# 1024² (bs 16); ViG-S / B (their stacks padded to 64 columns, bigla_attn.stack_width) since session 36: 23,081 against
# 22,582 and 9,345 against 9,224.
# stem_op (vig::stem_conv_norm_silu: the V2 stem's first conv, LayerNorm2d and SiLU as one kernel at inference) is on
# since session 36: H100, bf16, bs 256, the head 0.128 against 0.269 ms at ViG-T, ViG-T inference 48,192 against
# 47,321 img/s (the kernel's first version, 0.214 ms, measured even).
# weight_pack (layers/weight_pack.py: a plain-ViG block's weights cast by one cat at inference) is on since session 37:
# H100, bf16, bs 256, CUDA graphs, ViG-T inference 49,410 against 48,571 img/s in one call (49,713 in the next),
# ViG-B 9,484 against 9,462; ViG-S 24,210 against call 11's 23,375 (its A/B process ran out of time).
# linear_add_norm (session 37, vig::linear_add_rms_norm: ViG-T's o_proj / down_proj GEMM inside the kernel of the
# residual add and the next RMSNorm, whole 192-wide rows a program, inference) was removed in session 37: on an H100,
# bf16, 50,176 rows, its best launch took 0.055 / 0.060 ms against cuBLAS + inductor's 0.058 / 0.062 (K 192 / 256),
# 66 us a call inside the model (23 calls 1.519 ms against 1.378 for the GEMMs and norms it replaced), ViG-T
# inference 47,695 against 48,913 img/s (bs 256, CUDA graphs). Its design: benchmarks/NOTES_bigla.md, session 37.
# gk_proj_op (vig::low_rank_linear: gk_proj's second layer at inference, where cuBLAS's K = 16 GEMM runs at ~1.2 TB/s,
# 0.193 of ViG-T's 5.05 ms step) is on since session 38: H100, bf16, bs 256, CUDA graphs, the layer alone 0.0096
# against addmm's 0.0186 ms at ViG-T (0.034 against 0.045 at ViG-B), ViG-T inference 50,919 against 49,834 img/s,
# ViG-S 24,383 against 24,174, ViG-B 9,355 against 9,268 (each A/B in its own process of one call).
# bigla_gate (session 38, c1207fd: vig::bigla_packed_gated, the 2D gate as the seq forward's epilogue at inference, so
# the op's output was never written and read back by the gate kernel) was removed in session 38: H100, bf16, bs 256,
# CUDA graphs, ViG-T inference 48,259 against 50,396 img/s, ViG-S 23,879 against 24,564, ViG-B 9,247 against 9,484
# (each A/B in its own process of one call). The forward is a latency-bound walk on 2 warps at its 168-register cap;
# the gate's two tile loads and norms in its loop took its spill stores from 10 to 19 (ptxas, sm_90a).
# gk_proj_train (vig::low_rank_gate: the mixer's two gate-projection layers in training as one kernel each way, at
# widths up to 256) is on since session 45: H100, bf16, bs 256, CUDA graphs, ViG-T training 12,985 / 12,982 against
# 12,825 / 12,828 / 12,833 img/s (each in its own process of one machine); at ViG-S's width it timed slower alone.
OPT_IN = ("add_rmsnorm", "swiglu_op_channels")
# vig::linear_swiglu's GEMMs on persistent warp-specialized TMA kernels where they can run (sm_90, bf16 / fp16;
# linear_swiglu_tma.py), on since session 42: H100, bf16, bs 256, ViG-B's forward 0.462 ms against the block grid's
# 0.592, inference ViG-T 50,939 against 49,274 img/s, ViG-S 25,297 against 24,445, ViG-B 9,894 against 9,340 (each in
# its own process of one call). VIG_LINEAR_SWIGLU_TMA=0 keeps the block grid (A/B runs).
LINEAR_SWIGLU_TMA = switch("VIG_LINEAR_SWIGLU_TMA", "1")
MAX_NORM_DIM = 16384  # the norm kernels hold one row in registers


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """x as a [M, D] matrix with unit column stride; copies only when a view cannot do that."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a layer computes x's products in: autocast's for x's device when it is on, else x's own."""
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


def sm90(device) -> bool:
    """A Hopper GPU: where the MLP op's TMA kernels were measured and run (their launches fill its shared memory).
    torch.compile folds the query to a constant."""
    return torch.cuda.get_device_properties(device).major == 9


def _triton_importable() -> bool:
    if "ok" not in _TRITON:
        try:
            import triton  # noqa: F401
            _TRITON["ok"] = True
        except ImportError:
            _TRITON["ok"] = False
    return _TRITON["ok"]


def fused_enabled(x: torch.Tensor, name: str = "") -> bool:
    """True when x lives on CUDA, VIG_FUSED is not '0', triton imports, and we are not being
    traced by torch.compile (which fuses the plain path itself and cannot trace a Triton launch).
    VIG_FUSED_OFF=name,... turns single fusions off for A/B timings (names at the call sites);
    VIG_FUSED_ON=name,... turns on the ones that are off by default (OPT_IN)."""
    return fused_op_enabled(x, name) and not torch.compiler.is_compiling()


def fused_op_enabled(x: torch.Tensor, name: str) -> bool:
    """For Triton kernels registered as custom ops (fused/*_op.py): like fused_enabled, also while torch.compile
    traces, which then calls the op instead of fusing the plain path itself."""
    if not rewrite_enabled(x, name):
        return False
    if name in OPT_IN and name not in os.environ.get("VIG_FUSED_ON", "").split(","):
        return False
    return _triton_importable()


def rewrite_enabled(x: torch.Tensor, name: str) -> bool:
    """For plain-PyTorch rewrites that only pay off on CUDA (no Triton, so also under torch.compile):
    x on CUDA, VIG_FUSED not '0' and `name` not in VIG_FUSED_OFF. fused_enabled adds its checks to these."""
    return x.is_cuda and switched_on(name)


def switched_on(name: str) -> bool:
    """VIG_FUSED not '0' and `name` not in VIG_FUSED_OFF (read on every call: tests and A/B runs set them)."""
    if os.environ.get("VIG_FUSED", "1") == "0":
        return False
    return not name or name not in os.environ.get("VIG_FUSED_OFF", "").split(",")


def linear_swiglu_kernels(device) -> str:
    """Which form ViG's MLP input half takes on `device` in bf16 / fp16 (for benchmark records): 'tma' or
    'block_grid' (vig::linear_swiglu's kernels), 'split' (cuBLAS + the SwiGLU kernels: switched off, or no CUDA)."""
    if device.type != "cuda" or not switched_on("linear_swiglu") or not _triton_importable():
        return "split"
    if not LINEAR_SWIGLU_TMA:
        return "block_grid"
    from vig.layers.fused.linear_swiglu_tma import runs_on
    return "tma" if runs_on(device) else "block_grid"
