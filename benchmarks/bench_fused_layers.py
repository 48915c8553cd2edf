"""GPU micro-benchmark of the fused layers around the op, at ViG-T's and ViG-B's training shapes (bs 256, 224²).

- The 2D gate (layers/fused/gate.py) forward and backward at several row tiles (`gate._TILE`, fp32 values per
  live tile; the default is the one the layer uses), with ViG-T's folded SiLU.
- SwiGLU's backward: our kernel (layers/fused/swiglu.py) against inductor's code for the same math, which is
  what a compiled training step runs.

GPU-only medians (vig.bench.timing.gpu_ms, CUDA events, 50 calls), bf16 tensors; the effective bandwidth counts
each tensor read or written once. Writes JSON to --out.

    python3 benchmarks/bench_fused_layers.py --out benchmarks/results/fused_layers.json
"""
import argparse
import json
from unittest import mock

import torch
import torch.nn.functional as F

from vig.bench.provenance import code_identity
from vig.bench.runner import write_json
from vig.bench.timing import gpu_ms
from vig.layers.fused import gate as gate_mod
from vig.layers.fused.swiglu import swiglu_backward
from vig.layers.mlp import swiglu_hidden

BATCH = 256
TOKENS = BATCH * 196
MODELS = {"ViG-T": (192, 3), "ViG-B": (768, 12)}  # dim, heads (head dim 64)
TILES = (1024, 2048, 4096, 8192)


def _gate_case(dim, tile, dev):
    M, D = TOKENS * dim // 64, 64
    o, loc, gp, dout = (torch.randn(M, D, device=dev, dtype=torch.bfloat16) for _ in range(4))
    wg, wl = torch.rand(D, device=dev) + 0.5, torch.rand(D, device=dev) + 0.5
    with mock.patch.object(gate_mod, "_TILE", tile):
        _, r_o, r_l = gate_mod.gate_forward(o, loc, gp, wg, wl, 1e-6, True)
        fwd = gpu_ms(lambda: gate_mod.gate_forward(o, loc, gp, wg, wl, 1e-6, True), dev)
        bwd = gpu_ms(lambda: gate_mod.gate_backward(dout, o, loc, gp, wg, wl, r_o, r_l, True), dev)
    mb = o.numel() * 2 / 1e6
    return {"rows": M, "fwd_ms": fwd, "bwd_ms": bwd, "fwd_GBps": 4 * mb / fwd, "bwd_GBps": 7 * mb / bwd}


def _swiglu_dh_reference(h, dout):
    a, b = h.float().chunk(2, dim=-1)
    d = dout.float()
    s = torch.sigmoid(a)
    return torch.cat([d * b * s * (1 + a * (1 - s)), d * F.silu(a)], dim=-1).to(h.dtype)


def _swiglu_case(dim, dev):
    hidden = swiglu_hidden(dim, 256)
    h = torch.randn(TOKENS, 2 * hidden, device=dev, dtype=torch.bfloat16)
    dout = torch.randn(TOKENS, hidden, device=dev, dtype=torch.bfloat16)
    compiled = torch.compile(_swiglu_dh_reference, dynamic=False)

    ours = gpu_ms(lambda: swiglu_backward(h, dout, 1), dev)
    inductor = gpu_ms(lambda: compiled(h, dout), dev)
    err = (swiglu_backward(h, dout, 1).float() - compiled(h, dout).float()).abs().max().item()
    mb = (2 * h.numel() + dout.numel()) * 2 / 1e6
    return {"hidden": hidden, "ours_ms": ours, "inductor_ms": inductor, "ours_GBps": mb / ours,
            "inductor_GBps": mb / inductor, "max_abs_diff": err}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("times CUDA kernels: no CUDA device here")
    dev = torch.device("cuda")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": "bf16",
              "tokens": TOKENS, "default_gate_tile": gate_mod._TILE,
              **code_identity(), "gate": {}, "swiglu_bwd": {}}
    for name, (dim, _) in MODELS.items():
        report["gate"][name] = {str(t): _gate_case(dim, t, dev) for t in TILES}
        report["swiglu_bwd"][name] = _swiglu_case(dim, dev)
        print(name, json.dumps({k: report[k][name] for k in ("gate", "swiglu_bwd")}), flush=True)
    write_json(report, args.out)


if __name__ == "__main__":
    main()
