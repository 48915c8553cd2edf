"""Dense-prediction backbone cost, like the FLOPs columns of the paper's Table 2: ViG-T against a plain ViT-T
(timm vit_tiny_patch16_224, dynamic_img_size, GLOBAL attention in every block) at 1333x800 (detection) and
512x512 (segmentation), both through the same adapter (vig.downstream.DenseBackbone: input padded to a multiple
of 32, last block -> ViTDet simple feature pyramid). ViG-H-T (four native stages) is an extra row.

  python benchmarks/bench_downstream.py                                   # GPU, writes downstream_gpu.json
  python benchmarks/bench_downstream.py --device cpu --sizes 512x512 --repeats 2 --out /tmp/downstream_cpu.json

Per (backbone, size): parameters, forward GFLOPs and GMACs (torch.utils.flop_counter on the meta device, so
exact and device independent, with the BiGLA recurrence formula of vig.bench.flops; 1 MAC = 2 FLOPs) of the
trunk alone and with the pyramid, and batch-1 inference latency (median of timed blocks after warmup; CUDA
events on GPU) in fp32 and bf16 autocast, plus peak memory.

The paper's Table 2 numbers (ViG-T 61.2G / 14.9G, ViT-T 147.1G / 20.9G) are for ViT-Adapter backbones and look
like fvcore counts (1 MAC = 1 "FLOP"); they are stored next to ours for reference only. Ours have no adapter,
so compare the ViG/ViT ratio, not the absolute numbers.
"""
import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time

import torch

from vig.bench import flops as F
from vig.bench import timing as T
from vig.downstream.backbone import build_timm_backbone

BACKBONES = {"vig_tiny": "ViG-T", "vit_tiny_patch16_224": "ViT-T (global attention)", "vig_h_tiny": "ViG-H-T"}
PAPER_GFLOPS = {("vig_tiny", "1333x800"): 61.2, ("vit_tiny_patch16_224", "1333x800"): 147.1,
                ("vig_tiny", "512x512"): 14.9, ("vit_tiny_patch16_224", "512x512"): 20.9}


def parse_size(s):
    w, h = (int(v) for v in s.lower().split("x"))
    return w, h


def count_gflops(body, w, h, trunk_only):
    """Forward FLOPs of one w x h image on the meta device (shapes only: exact, device independent, instant).
    timm's fused attention (SDPA) is switched to its explicit matmul form while counting: flop_counter has no
    formula for some SDPA kernels, which would silently drop ViT's N^2 attention."""
    body = copy.deepcopy(body).to("meta").eval()
    for m in body.modules():
        if getattr(m, "fused_attn", None) is True:
            m.fused_attn = False
    x = torch.empty(1, 3, h, w, device="meta")
    idx = body.stage_idx if body.stage_idx is not None else [body.plain_idx]

    def run():
        if not trunk_only:
            return body(x)
        xp = torch.nn.functional.pad(x, (0, (-w) % 32, 0, (-h) % 32))  # the adapter's padding
        return body.model.forward_intermediates(xp, indices=idx, output_fmt="NCHW", intermediates_only=True)

    with torch.no_grad():
        _, c = F.count_flops(run)
    return c["total"] / 1e9, c["bigla"] / 1e9


def bench_one(name, size, device, args):
    w, h = parse_size(size)
    body, _ = build_timm_backbone(name)
    row = {"backbone": name, "label": BACKBONES.get(name, name), "size": size,
           "params_M": sum(p.numel() for p in body.parameters()) / 1e6,
           "params_trunk_M": sum(p.numel() for p in body.model.parameters()) / 1e6}
    t_total, t_bigla = count_gflops(body, w, h, trunk_only=True)
    b_total, _ = count_gflops(body, w, h, trunk_only=False)
    row.update(trunk_gflops=t_total, trunk_gmacs=t_total / 2, bigla_gflops=t_bigla, backbone_gflops=b_total,
               backbone_gmacs=b_total / 2, paper_gflops_with_adapter=PAPER_GFLOPS.get((name, size)))
    if args.flops_only:
        return row
    body.eval().to(device)
    x = torch.randn(1, 3, h, w, device=device)
    for dtype in args.dtypes:
        T.free_memory(device)
        T.reset_peak(device)
        try:
            per_call, warm_s = T.time_steps(T.inference_step(body, x, device, dtype), device, warmup=args.warmup,
                                            repeats=args.repeats, iters=args.iters, max_seconds=args.max_seconds)
            row[dtype] = dict(T.summarize(per_call, 1), warmup_s=warm_s, peak_mib=T.peak_mib(device))
        except RuntimeError as e:
            if not T.is_oom(e):
                raise
            row[dtype] = {"oom": True}
    del body, x
    T.free_memory(device)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", nargs="+", default=["1333x800", "512x512"], help="WxH")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    p.add_argument("--dtypes", nargs="+", default=None, help="default: fp32 bf16 on GPU, fp32 on CPU")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=30.0, help="timed seconds per point at most")
    p.add_argument("--flops-only", action="store_true", help="count FLOPs (meta device) and skip timing")
    p.add_argument("--out", default="benchmarks/results/downstream_gpu.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available() and not args.flops_only:
        sys.exit("bench_downstream: no CUDA GPU here; run with --device cpu (reduced repeats) to check it")
    gpu = device.type == "cuda"
    args.dtypes = args.dtypes or (["fp32", "bf16"] if gpu else ["fp32"])
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    args.repeats = args.repeats if args.repeats is not None else (10 if gpu else 2)
    args.iters = args.iters if args.iters is not None else (5 if gpu else 1)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
    rows, t0 = [], time.time()
    for size in args.sizes:
        for name in args.backbones:
            row = bench_one(name, size, device, args)
            rows.append(row)
            lat = "  ".join(f"{d} {row[d].get('ms_per_step', float('nan')):.1f} ms" for d in args.dtypes if d in row)
            print(f"{size:>9} {row['label']:<26} trunk {row['trunk_gflops']:7.1f} GFLOPs  "
                  f"+SFP {row['backbone_gflops']:7.1f}  {lat}", flush=True)
    env = {"device": ("none (FLOPs only)" if args.flops_only else
                      torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu"),
           "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "seconds": round(time.time() - t0, 1)}
    out = {"what": "backbone FLOPs and batch-1 inference latency for dense prediction (paper Table 2 FLOPs columns)",
           "env": env, "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows}
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
