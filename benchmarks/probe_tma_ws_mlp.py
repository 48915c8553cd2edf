"""Probe: the MLP's first projection + SwiGLU (vig::linear_swiglu) on its TMA kernels
(`src/vig/layers/fused/linear_swiglu_tma.py`: persistent, warp-specialized, W read with its a / b rows interleaved)
at several launches, against the block-grid kernels the models run and cuBLAS's GEMM alone (no SwiGLU: the
yardstick), at ViG-T/S/B's MLP shapes (bf16, 256 images of 196 tokens).

Why: at ViG-B (K 768, N 2 x 2048) the block-grid forward runs at ~540 TFLOPS (0.58 ms a call, 7.3 ms of ViG-B's
26 ms inference step on an H100) where cuBLAS runs DeiT-B's GEMMs at ~700 (session 41's kernel tables). Neither a
wider dot (session 41) nor TMA loads on the block grid (session 39, ViG-T only) closed that.

Prints JSON: per shape, the relative RMSE of each launch's y and dh against the split path in float32, and GPU ms
(CUDA events, median of 50 after warmup) of each launch's forward and dh kernel (W's interleave included, as the op
runs it), the block grid's (switched to it: the TMA kernels are the op's default route on sm_90 since session 42;
session 43's `block_grid` rows timed that default instead), cuBLAS's F.linear to [M, 2N], and the interleave alone.

    python3 benchmarks/probe_tma_ws_mlp.py --out benchmarks/results/probe_tma_ws_mlp.json
"""
import torch
import triton

TOKENS = 256 * 196
MODELS = {"ViG-T": 192, "ViG-S": 384, "ViG-B": 768}
# (BM, BN over both halves, BK, warps, stages, warp-specialized); linear_swiglu_tma's DH_LAUNCH and FWD_LAUNCH among
# them (session 42 chose those from this sweep)
LAUNCHES = [(128, 256, 64, 8, 3, True), (128, 256, 64, 8, 4, True), (128, 256, 64, 8, 3, False),
            (128, 128, 64, 4, 4, True), (128, 128, 64, 8, 4, True), (256, 128, 64, 8, 3, True)]


def _case(dim, dev, args):
    from unittest import mock

    import torch.nn.functional as F

    from vig.bench.timing import gpu_ms
    from vig.layers.fused import linear_swiglu as kernels
    from vig.layers.fused import linear_swiglu_tma as tma
    from vig.layers.mlp import swiglu_hidden
    hidden = swiglu_hidden(dim, 256)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(TOKENS, dim, device=dev, generator=g).to(torch.bfloat16)
    w = (torch.randn(2 * hidden, dim, device=dev, generator=g) / dim ** 0.5).to(torch.bfloat16)
    dy = torch.randn(TOKENS, hidden, device=dev, generator=g).to(torch.bfloat16)
    h = F.linear(x.float(), w.float()).requires_grad_()
    a, b = h.chunk(2, dim=-1)
    ref = F.silu(a) * b
    ref_dh = torch.autograd.grad(ref, h, dy.float())[0]

    def err(got, want):
        return float((got.float() - want).norm() / want.norm())
    with mock.patch.object(kernels, "TMA", False):
        block_grid = {"fwd_ms": gpu_ms(lambda: kernels.linear_swiglu_forward(x, w), dev),
                      "dh_ms": gpu_ms(lambda: kernels.linear_swiglu_dh(x, w, dy), dev),
                      "rel_rmse": err(kernels.linear_swiglu_forward(x, w), ref),
                      "dh_rel_rmse": err(kernels.linear_swiglu_dh(x, w, dy), ref_dh)}
    row = {"M": TOKENS, "K": dim, "N": hidden, "block_grid": block_grid,
           "cublas_gemm_only_ms": gpu_ms(lambda: F.linear(x, w), dev),
           "interleave_ms": gpu_ms(lambda: tma.interleave(w), dev)}
    for launch in LAUNCHES:
        key = "x".join(str(int(v)) for v in launch)
        try:
            row[key] = {"fwd_ms": gpu_ms(lambda: tma.forward(x, w, launch), dev),
                        "dh_ms": gpu_ms(lambda: tma.dh(x, w, dy, launch), dev),
                        "rel_rmse": err(tma.forward(x, w, launch), ref),
                        "dh_rel_rmse": err(tma.dh(x, w, dy, launch), ref_dh)}
        except Exception as e:  # a launch that does not compile (shared memory, registers) is a result
            row[key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return row


def main():
    from vig.bench.micro import micro_main
    micro_main(_case, MODELS, {"dtype": "bf16", "tokens": TOKENS, "triton": triton.__version__})


if __name__ == "__main__":
    main()
