"""Where vig::linear_swiglu's weight gradient loses precision at 50,179 rows (call 26, session 49: relative error
0.0082 (bf16) / 0.0078 (fp16) against float64 at ViG-T's width, both routes, where 787 rows pass the 5e-3 tolerance
and the same math on the CPU gives 0.0023 / 0.0003 at either count).

For each width, dtype and row count it prints one JSON line: the rel. error against float64 of the op's dh (whole,
and its first and last 4,096 rows), of dw from that dh through the matmul the op's backward runs (dh^T x in the half
dtype), through an fp32 matmul, with cuBLAS's reduced-precision reduction off, and of the split path's dw.
  python3 benchmarks/device/mlp_dw_precision.py [--rows 787,50179] [--dims 192,768]
With --chunked: the op's weight_grad (row chunks summed in fp32, the fix) at several chunk lengths against one
matmul, error and median ms (bench_bigla.time_ms: CUDA events, 50 after 5 warmup), bf16.
With --linears MODEL,...: the other question session 49 left open. Each token-level nn.Linear shape of the models
(the head excluded), its weight gradient through plain F.linear's backward (cuBLAS, as every model trains) and
through weight_grad, rel. error from float64 at --rows (default 50,176: bs 256 at 224²), bf16 and fp16.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F


def rel(got, exact):
    d = got.double() - exact
    return float(d.pow(2).mean().sqrt() / exact.pow(2).mean().sqrt())


def exact_dh(x, w, dy):
    h = x.double() @ w.double().t()
    a, b = h.chunk(2, -1)
    s = torch.sigmoid(a)
    dyd = dy.double()
    return torch.cat([dyd * b * s * (1 + a * (1 - s)), dyd * a * s], -1)


def probe(rows, dim, dtype, hidden):
    from vig.layers.fused.linear_swiglu import linear_swiglu_dh
    gen = torch.Generator().manual_seed(dim)
    x = torch.randn(rows, dim, generator=gen).cuda().to(dtype)
    w = (torch.randn(2 * hidden, dim, generator=gen) / dim ** 0.5).cuda().to(dtype)
    dy = torch.randn(rows, hidden, generator=gen).cuda().to(dtype)
    dh_ref = exact_dh(x, w, dy)
    dw_ref = dh_ref.t() @ x.double()
    dh = linear_swiglu_dh(x, w, dy)
    out = {"rows": rows, "dim": dim, "dtype": str(dtype).split(".")[-1], "dh": rel(dh, dh_ref),
           "dh_first4096": rel(dh[:4096], dh_ref[:4096]), "dh_last4096": rel(dh[-4096:], dh_ref[-4096:]),
           "dw_half_mm": rel(dh.t() @ x, dw_ref), "dw_fp32_mm": rel(dh.float().t() @ x.float(), dw_ref),
           "dw_from_exact_dh_half_mm": rel(dh_ref.to(dtype).t() @ x, dw_ref)}
    flags = torch.backends.cuda.matmul
    saved = (flags.allow_bf16_reduced_precision_reduction, flags.allow_fp16_reduced_precision_reduction)
    flags.allow_bf16_reduced_precision_reduction = flags.allow_fp16_reduced_precision_reduction = False
    try:
        out["dw_half_mm_no_reduced_reduction"] = rel(dh.t() @ x, dw_ref)
    finally:
        flags.allow_bf16_reduced_precision_reduction, flags.allow_fp16_reduced_precision_reduction = saved
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    a, b = F.linear(xr, wr).chunk(2, -1)
    (F.silu(a) * b).backward(dy)
    out["dw_split"] = rel(wr.grad, dw_ref)
    out["dw_out_fp32"] = rel(torch.mm(dh.t(), x, out_dtype=torch.float32), dw_ref) if _has_out_dtype() else None
    return out


def _has_out_dtype():
    try:
        a = torch.ones(2, 2, device="cuda", dtype=torch.bfloat16)
        torch.mm(a, a, out_dtype=torch.float32)
        return True
    except (TypeError, RuntimeError):
        return False


def chunked(rows, dim, hidden, dtype=torch.bfloat16):
    """The op's weight_grad at several chunk lengths against one matmul: rel. error from float64 and median ms."""
    from vig.layers.fused.linear_swiglu_op import weight_grad
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/: the op bench's timer
    from bench_bigla import time_ms
    gen = torch.Generator().manual_seed(dim)
    x = torch.randn(rows, dim, generator=gen).cuda().to(dtype)
    dh = (torch.randn(rows, 2 * hidden, generator=gen) / 4).cuda().to(dtype)
    exact = dh.double().t() @ x.double()
    out = {"rows": rows, "dim": dim, "hidden": hidden, "dtype": str(dtype).split(".")[-1]}
    forms = {"mm": lambda: dh.t() @ x}
    for chunk in (1024, 2048, 4096, 8192):
        forms[f"chunk{chunk}"] = lambda c=chunk: weight_grad(dh, x, c)
    for name, fn in forms.items():
        out[name] = {"err": rel(fn(), exact), "ms": time_ms(fn, 50, warmup=5)}
    return out


def linear_shapes(model_name):
    """{(out_features, in_features): [module names]} of a timm model's nn.Linear layers, the classifier head left out
    (it sees one row an image, not one a token)."""
    import timm
    import torch.nn as nn
    import vig  # noqa: F401  (registers the ViG models with timm)
    shapes = {}
    for name, module in timm.create_model(model_name).named_modules():
        if isinstance(module, nn.Linear) and not name.startswith("head"):
            shapes.setdefault((module.out_features, module.in_features), []).append(name)
    return shapes


def linear_wgrad(rows, out_features, in_features, dtype, device="cuda"):
    """A linear layer's weight gradient at `rows` tokens: plain F.linear's backward and weight_grad, against float64."""
    from vig.layers.fused.linear_swiglu_op import weight_grad
    gen = torch.Generator().manual_seed(rows + out_features + in_features)
    x = torch.randn(rows, in_features, generator=gen).to(device, dtype)
    w = (torch.randn(out_features, in_features, generator=gen) / in_features ** 0.5).to(device, dtype)
    dy = torch.randn(rows, out_features, generator=gen).to(device, dtype)
    exact = dy.double().t() @ x.double()
    wr = w.clone().requires_grad_()
    F.linear(x, wr).backward(dy)
    return {"rows": rows, "out": out_features, "in": in_features, "dtype": str(dtype).split(".")[-1],
            "f_linear": rel(wr.grad, exact), "weight_grad": rel(weight_grad(dy, x), exact)}


def main():
    from vig.layers.mlp import swiglu_hidden
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default=None, help="comma-separated (default 787,50179; 50176 with --linears)")
    p.add_argument("--dims", default="192,768")
    p.add_argument("--chunked", action="store_true", help="time and check weight_grad's chunk lengths instead")
    p.add_argument("--linears", default="", help="models whose nn.Linear weight gradients to check instead")
    args = p.parse_args()
    if args.linears:
        for model in args.linears.split(","):
            for (out_f, in_f), names in sorted(linear_shapes(model).items()):
                for rows in map(int, (args.rows or "50176").split(",")):
                    for dtype in (torch.bfloat16, torch.float16):
                        print(json.dumps({"model": model, "layers": names[:2], "count": len(names),
                                          **linear_wgrad(rows, out_f, in_f, dtype)}), flush=True)
        return
    args.rows = args.rows or "787,50179"
    if args.chunked:
        for dim in map(int, args.dims.split(",")):
            for rows in map(int, args.rows.split(",")):
                print(json.dumps(chunked(rows, dim, swiglu_hidden(dim, 256))), flush=True)
        return
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}))
    for dim in map(int, args.dims.split(",")):
        for dtype in (torch.bfloat16, torch.float16):
            for rows in map(int, args.rows.split(",")):
                print(json.dumps(probe(rows, dim, dtype, swiglu_hidden(dim, 256))), flush=True)


if __name__ == "__main__":
    main()
