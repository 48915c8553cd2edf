"""GPU micro-benchmark of the fused layers around the op, at ViG-T's and ViG-B's training shapes (bs 256, 224²).

- The 2D gate (layers/fused/gate.py) forward and backward at several row tiles (`gate._TILE`, fp32 values per
  live tile; the default is the one the layer uses), with ViG-T's folded SiLU; then the backward alone on its
  persistent grid at several (row tile, programs per SM) (`gate.BWD_TILE`, `gate.BWD_PROGRAMS_PER_SM`; the default,
  1024 x 4 since session 23, is the report's `default_gate_bwd`).
- SwiGLU's backward: our kernel (layers/fused/swiglu.py) against inductor's code for the same math, which is
  what a compiled training step runs.
- The residual add + RMSNorm (layers/fused/add_rmsnorm.py) as the blocks call it under autocast (fp32 stream,
  bf16 branch and norm output), forward and backward, the backward at several (row tile, programs per SM), against
  inductor's code for the same math (the backward: both grads, fp32 and bf16, and the weight grad).

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
from vig.layers.fused import add_rmsnorm as add_norm_mod
from vig.layers.fused import gate as gate_mod
from vig.layers.fused.swiglu import swiglu_backward
from vig.layers.mlp import swiglu_hidden

BATCH = 256
TOKENS = BATCH * 196
MODELS = {"ViG-T": (192, 3), "ViG-B": (768, 12)}  # dim, heads (head dim 64)
TILES = (1024, 2048, 4096, 8192)
GATE_PERSISTENT = ((1024, 3), (1024, 4), (2048, 2), (2048, 3))  # (row tile, programs per SM)
# (row tile, programs per SM of the persistent grid; 1,000,000: one row block per program)
ADD_NORM_BWD = ((1024, 4), (2048, 4), (2048, 8), (2048, 1_000_000), (4096, 2), (4096, 4))


def _gate_case(dim, tile, dev, per_sm=0):
    M, D = TOKENS * dim // 64, 64
    o, loc, gp, dout = (torch.randn(M, D, device=dev, dtype=torch.bfloat16) for _ in range(4))
    wg, wl = torch.rand(D, device=dev) + 0.5, torch.rand(D, device=dev) + 0.5
    with mock.patch.multiple(gate_mod, _TILE=tile, BWD_TILE=tile, BWD_PROGRAMS_PER_SM=per_sm):
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


def _add_norm_plain_fwd(x, y, w):
    s = x + y
    rstd = torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-6)
    return s, (s * rstd * w).to(torch.bfloat16), rstd.squeeze(-1)


def _add_norm_plain_bwd(s, w, rstd, ds, dn):
    shat = s * rstd[:, None]
    a = dn.float() * w
    d = (a - shat * (a * shat).mean(-1, keepdim=True)) * rstd[:, None] + ds
    return d, d.to(torch.bfloat16), (dn.float() * shat).sum(0)


def _add_norm_case(dim, dev):
    x, ds = (torch.randn(TOKENS, dim, device=dev) for _ in range(2))
    y, dn = (torch.randn(TOKENS, dim, device=dev, dtype=torch.bfloat16) for _ in range(2))
    w = torch.rand(dim, device=dev) + 0.5
    s, _, rstd = add_norm_mod.add_rms_norm_forward(x, y, w, 1e-6, torch.bfloat16)
    fwd, bwd = torch.compile(_add_norm_plain_fwd, dynamic=False), torch.compile(_add_norm_plain_bwd, dynamic=False)
    out = {"ours_fwd_ms": gpu_ms(lambda: add_norm_mod.add_rms_norm_forward(x, y, w, 1e-6, torch.bfloat16), dev),
           "inductor_fwd_ms": gpu_ms(lambda: fwd(x, y, w), dev),
           "inductor_bwd_ms": gpu_ms(lambda: bwd(s, w, rstd, ds, dn), dev)}
    ref = bwd(s, w, rstd, ds, dn)
    for tile, per_sm in ADD_NORM_BWD:
        with mock.patch.multiple(add_norm_mod, BWD_TILE=tile, BWD_PROGRAMS_PER_SM=per_sm):
            out[f"ours_bwd_ms_{tile}x{per_sm}"] = gpu_ms(
                lambda: add_norm_mod.add_rms_norm_backward(s, w, rstd, ds, dn, torch.bfloat16), dev)
            got = add_norm_mod.add_rms_norm_backward(s, w, rstd, ds, dn, torch.bfloat16)
            out[f"max_rel_diff_{tile}x{per_sm}"] = max(
                ((a.float() - b.float()).abs().max() / b.float().abs().max()).item() for a, b in zip(got, ref))
    mb = TOKENS * dim / 1e6
    out["bytes_fwd_MB"], out["bytes_bwd_MB"] = 12 * mb, 16 * mb  # fp32 x, s, ds, dx; bf16 y, n, dn, dy
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=("gate", "swiglu_bwd", "add_rmsnorm"), nargs="*",
                    default=("gate", "swiglu_bwd", "add_rmsnorm"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("times CUDA kernels: no CUDA device here")
    dev = torch.device("cuda")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": "bf16",
              "tokens": TOKENS, "default_gate_tile": gate_mod._TILE,
              "default_gate_bwd": [gate_mod.BWD_TILE, gate_mod.BWD_PROGRAMS_PER_SM],
              "default_add_rmsnorm_bwd": [add_norm_mod.BWD_TILE, add_norm_mod.BWD_PROGRAMS_PER_SM],
              **code_identity(), **{k: {} for k in args.only}}
    cases = {"gate": lambda dim: {**{str(t): _gate_case(dim, t, dev) for t in TILES},
                                  **{f"{t}x{p}": _gate_case(dim, t, dev, p) for t, p in GATE_PERSISTENT}},
             "swiglu_bwd": lambda dim: _swiglu_case(dim, dev), "add_rmsnorm": lambda dim: _add_norm_case(dim, dev)}
    for name, (dim, _) in MODELS.items():
        for k in args.only:
            report[k][name] = cases[k](dim)
        print(name, json.dumps({k: report[k][name] for k in args.only}), flush=True)
    write_json(report, args.out)


if __name__ == "__main__":
    main()
