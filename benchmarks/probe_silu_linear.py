"""Probe: ViG-T's merged projection GEMM with the depthwise conv's SiLU applied to its x tiles as they are read
(a persistent, warp-specialized TMA kernel), against what inference runs now: an inductor SiLU pass, then cuBLAS.

Why: ViG-T (the only size with the conv's SiLU, use_act_in_conv) spends 0.168 ms of its 4.92 ms inference step on
that pass (12 calls, session 38's kernel table, profile_models_h100_session38_vigt_infer.json): 3.4%, where ViG-T
infers at 0.981x DeiT-T (session 42). The pass's output feeds the merged projection (bigla_attn.merged_projections:
K 192, 592 columns) and the gate's local branch. Dropping it needs the SiLU in both consumers; this probe times the
GEMM half. Worth wiring if `silu_linear` at its best launch beats `silu_then_cublas` by clearly more than the gate
kernel would spend on silu(loc) (a register op on a tile it already reads).

Prints JSON per shape (M tokens, K, N): GPU ms (CUDA events, median of 50 after warmup) of F.silu then torch.mm,
of torch.mm alone, of F.silu alone, and of this kernel at several launches, with each launch's relative RMSE against
float32 (silu in float32, rounded to x's dtype as the current path does, then the GEMM).

    python3 benchmarks/probe_silu_linear.py --out benchmarks/results/probe_silu_linear.json
"""
import torch
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import dot_acc
from vig.ops.grid import cdiv, sm_count

# name: (M tokens, K, N): ViG-T's merged projection at 224² (bs 256) and at 1024² (bs 16)
SHAPES = {"ViG-T 224": (256 * 196, 192, 592), "ViG-T 1024": (16 * 4096, 192, 592)}
# (BM, BN, BK, warps, stages, warp-specialized)
LAUNCHES = [(128, 128, 64, 4, 3, True), (128, 128, 64, 8, 3, True), (256, 128, 64, 8, 3, True),
            (128, 64, 64, 4, 4, True), (64, 128, 64, 4, 4, True), (128, 128, 64, 4, 3, False)]
INTERPRETER_LAUNCH = (32, 32, 16, 4, 2, True)


@triton.jit
def silu_linear_kernel(x_desc, w_desc, y_desc, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       PROGRAMS: tl.constexpr, WS: tl.constexpr):
    """y = silu(x) W^T, the SiLU in fp32 on each x tile and rounded to x's dtype before the dot (as the separate
    pass stores it)."""
    n_n = tl.cdiv(N, BN)
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BM) * n_n, PROGRAMS, flatten=True, warp_specialize=WS):
        pm = tile // n_n
        pn = tile % n_n
        acc = tl.zeros([BM, BN], tl.float32)
        for k0 in range(0, K, BK):
            x = x_desc.load([pm * BM, k0]).to(tl.float32)
            x = (x * tl.sigmoid(x)).to(x_desc.dtype)
            acc = dot_acc(x, w_desc.load([pn * BN, k0]).T, acc, False)
        y_desc.store([pm * BM, pn * BN], acc.to(y_desc.dtype))


def silu_linear(x, w, launch=None):
    """silu(x) @ w.T for row-major x [M, K] and w [N, K] (bf16 / fp16, rows 16-byte multiples)."""
    from triton.tools.tensor_descriptor import TensorDescriptor
    bm, bn, bk, warps, stages, ws = launch or INTERPRETER_LAUNCH
    M, K = x.shape
    N = w.shape[0]
    y = torch.empty(M, N, device=x.device, dtype=x.dtype)
    programs = max(1, min(sm_count(x.device), cdiv(M, bm) * cdiv(N, bn)))
    descs = [TensorDescriptor.from_tensor(t, block) for t, block in ((x, [bm, bk]), (w, [bn, bk]), (y, [bm, bn]))]
    silu_linear_kernel[(programs,)](*descs, M, N, K, BM=bm, BN=bn, BK=bk, PROGRAMS=programs, WS=ws, num_warps=warps,
                                    num_stages=stages)
    return y


def reference(x, w):
    """The current path's math in float32: silu in float32, rounded to x's dtype, then the GEMM."""
    xf = x.float()
    return (xf * torch.sigmoid(xf)).to(x.dtype).float() @ w.float().t()


def _case(shape, dev, args):
    import torch.nn.functional as F

    from vig.bench.timing import gpu_ms
    M, K, N = shape
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(M, K, device=dev, generator=g).to(torch.bfloat16)
    w = (torch.randn(N, K, device=dev, generator=g) / K ** 0.5).to(torch.bfloat16)
    ref = reference(x, w)

    def err(got):
        return float((got.float() - ref).norm() / ref.norm())
    row = {"M": M, "K": K, "N": N,
           "silu_then_cublas_ms": gpu_ms(lambda: torch.mm(F.silu(x), w.t()), dev),
           "cublas_only_ms": gpu_ms(lambda: torch.mm(x, w.t()), dev),
           "silu_only_ms": gpu_ms(lambda: F.silu(x), dev),
           "silu_then_cublas_rel_rmse": err(torch.mm(F.silu(x), w.t()))}
    for launch in LAUNCHES:
        key = "x".join(str(int(v)) for v in launch)
        try:
            row[key] = {"ms": gpu_ms(lambda: silu_linear(x, w, launch), dev),
                        "rel_rmse": err(silu_linear(x, w, launch))}
        except Exception as e:  # a launch that does not compile (shared memory, registers) is a result
            row[key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return row


def main():
    from vig.bench.micro import micro_main
    micro_main(_case, SHAPES, {"dtype": "bf16", "triton": triton.__version__})


if __name__ == "__main__":
    main()
