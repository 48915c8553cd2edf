"""Probe: the MLP's first projection + SwiGLU (vig::linear_swiglu's forward) as a persistent GEMM with TMA loads and
stores and triton's warp specialization (a producer warp feeding the tensor-core warps), over W with its a / b rows
interleaved, against the block-grid kernel the models run and cuBLAS's GEMM alone (no SwiGLU: the yardstick).

Why: at ViG-B (K 768, N 2 x 2048, 50,176 rows) the block-grid forward runs at ~540 TFLOPS (0.58 ms a call, 7.3 ms of
ViG-B's 26 ms inference step on an H100) where cuBLAS runs DeiT-B's GEMMs at ~700 (session 41's kernel tables).
Neither a wider dot (session 41) nor TMA loads on the block grid (session 39, ViG-T only) closed that. Here each
program walks output tiles (`tl.range(..., warp_specialize=True)`), x and W' tiles arrive by TMA, one [BM, BN] dot
a K step covers both halves (W' rows alternate Wa's and Wb's: columns 2j, 2j+1 of the accumulator are a_j, b_j, split
in registers), and y goes out by a TMA store. W' = W interleaved is made per call here (6 MB at ViG-B, timed apart);
a model would make it once a step, with the weight pack.

Prints JSON: per shape, relative RMSE against the split path in float32, and GPU ms (CUDA events, median of 50
after warmup) of each launch, the default kernel, cuBLAS's F.linear to [M, 2N], and the interleave alone.

    python3 benchmarks/probe_tma_ws_mlp.py --out benchmarks/results/probe_tma_ws_mlp.json
"""
import argparse
import json

import torch
import triton
import triton.language as tl

TOKENS = 256 * 196
MODELS = {"ViG-T": 192, "ViG-S": 384, "ViG-B": 768}
# (BM, BN over both halves, BK, warps, stages, warp-specialized)
LAUNCHES = [(128, 256, 64, 8, 3, True), (128, 256, 64, 8, 4, True), (128, 256, 64, 8, 3, False),
            (128, 128, 64, 4, 4, True), (128, 128, 64, 8, 4, True), (256, 128, 64, 8, 3, True)]


@triton.jit
def linear_swiglu_tma_kernel(x_desc, w_desc, y_desc, M, N2, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                             NUM_PROGRAMS: tl.constexpr, WS: tl.constexpr):
    n_m = tl.cdiv(M, BM)
    n_n = tl.cdiv(N2, BN)
    for tile in tl.range(tl.program_id(0), n_m * n_n, NUM_PROGRAMS, flatten=True, warp_specialize=WS):
        # the column tiles of one row tile run in adjacent programs: their x rows meet in L2
        pm = tile // n_n
        pn = tile % n_n
        acc = tl.zeros([BM, BN], tl.float32)
        for k0 in range(0, K, BK):
            acc = tl.dot(x_desc.load([pm * BM, k0]), w_desc.load([pn * BN, k0]).T, acc)
        a, b = tl.split(tl.reshape(acc, [BM, BN // 2, 2]))
        y_desc.store([pm * BM, pn * (BN // 2)], (a * tl.sigmoid(a) * b).to(y_desc.dtype))


def interleave(w):
    """[Wa; Wb] ([2N, K]) -> rows a_0, b_0, a_1, b_1, ..."""
    n = w.shape[0] // 2
    return torch.stack((w[:n], w[n:]), dim=1).reshape(w.shape)


def tma_forward(x, w_il, launch, sms):
    from triton.tools.tensor_descriptor import TensorDescriptor
    bm, bn, bk, warps, stages, ws = launch
    M, K = x.shape
    y = torch.empty(M, w_il.shape[0] // 2, device=x.device, dtype=x.dtype)
    tiles = triton.cdiv(M, bm) * triton.cdiv(w_il.shape[0], bn)
    programs = min(sms, tiles)
    linear_swiglu_tma_kernel[(programs,)](
        TensorDescriptor.from_tensor(x, [bm, bk]), TensorDescriptor.from_tensor(w_il, [bn, bk]),
        TensorDescriptor.from_tensor(y, [bm, bn // 2]), M, w_il.shape[0], K, BM=bm, BN=bn, BK=bk,
        NUM_PROGRAMS=programs, WS=ws, num_warps=warps, num_stages=stages)
    return y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("times CUDA kernels: no CUDA device here")
    import torch.nn.functional as F

    from vig.bench.runner import write_json
    from vig.bench.timing import gpu_ms
    from vig.layers.fused.linear_swiglu import linear_swiglu_forward
    from vig.layers.mlp import swiglu_hidden
    dev = torch.device("cuda")
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "dtype": "bf16", "tokens": TOKENS, "models": {}}
    for name, dim in MODELS.items():
        hidden = swiglu_hidden(dim, 256)
        g = torch.Generator(device=dev).manual_seed(0)
        x = torch.randn(TOKENS, dim, device=dev, generator=g).to(torch.bfloat16)
        w = (torch.randn(2 * hidden, dim, device=dev, generator=g) / dim ** 0.5).to(torch.bfloat16)
        a, b = F.linear(x.float(), w.float()).chunk(2, dim=-1)
        ref = F.silu(a) * b
        w_il = interleave(w)
        row = {"M": TOKENS, "K": dim, "N": hidden,
               "default_ms": gpu_ms(lambda: linear_swiglu_forward(x, w), dev),
               "cublas_gemm_only_ms": gpu_ms(lambda: F.linear(x, w), dev),
               "interleave_ms": gpu_ms(lambda: interleave(w), dev)}
        row["default_rel_rmse"] = float((linear_swiglu_forward(x, w).float() - ref).norm() / ref.norm())
        for launch in LAUNCHES:
            key = "x".join(str(int(v)) for v in launch)
            try:
                y = tma_forward(x, w_il, launch, sms)
                row[key] = {"ms": gpu_ms(lambda: tma_forward(x, w_il, launch, sms), dev),
                            "rel_rmse": float((y.float() - ref).norm() / ref.norm())}
            except Exception as e:  # a launch that does not compile (shared memory, registers) is a result
                row[key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        report["models"][name] = row
        print(name, json.dumps(row), flush=True)
    write_json(report, args.out)


if __name__ == "__main__":
    main()
