"""Differential check: the official hustvl/ViG model code against our vig models, same weights, float64, CPU.

Builds the official ViG-T and ViG-H-T from their released configs, moves every parameter off its init, loads the
same fp32 state dict into ours through our official-checkpoint loader (timm pretrained route), and compares logits
(and each block's output) in float64. The official code's GPU-only imports (fla 0.1, causal_conv1d, transformers,
fvcore) come from ./stubs, our own PyTorch stand-ins; the official code itself is imported from --official at run
time and never copied here. See README.md.

    git clone https://github.com/hustvl/ViG /path/ViG && pip install einops yacs
    python3 benchmarks/official_check/check_official.py --official /path/ViG --out official_check.json [--quick]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

import timm
import torch

import vig  # noqa: F401  registers our models with timm

STUBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs")
NEEDED = ("config.py", "models/vig.py", "models/vig_h.py", "configs/vig/vig-t.yaml", "configs/vig-h/vig-h-t.yaml")
SEED = 0


def check_folder(ap, folder):
    """Refuse (argparse's exit 2, before anything is written) unless `folder` holds the official classification/."""
    if not os.path.isdir(folder):
        ap.error(f"--official {folder}: no such folder")
    missing = [p for p in NEEDED if not os.path.isfile(os.path.join(folder, "classification", p))]
    if missing:
        ap.error(f"--official {folder}: not a hustvl/ViG checkout (no classification/{missing[0]}); pass the folder "
                 "that contains classification/ (git clone https://github.com/hustvl/ViG)")


def official_commit(folder):
    """HEAD of `folder` if it is the top of a git checkout, else None (a git archive or a plain copy)."""
    try:
        top, head = subprocess.run(["git", "-C", folder, "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                                   text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    # an enclosing repository's HEAD (folder copied into some other checkout) would name the wrong code
    return head if os.path.realpath(top) == os.path.realpath(folder) else None


@torch.no_grad()
def perturb(model, gen):
    """Move every parameter off its init (an init-only match would hide transposed or swapped weights): norm weights
    ~1 +- .2, biases ~ .2, gate biases wide (so the decays spread), other weights + half their own std."""
    for name, p in model.named_parameters():
        n = torch.randn(p.shape, generator=gen)
        if name.endswith("gk_proj.1.bias"):
            p.add_(2.0 * n)
        elif p.ndim == 1 or name.endswith("norm.weight"):
            p.add_(0.2 * n)
        else:
            p.add_((0.5 * p.std() + 1e-3) * n)


def rel_rmse(a, b):
    """rms(a - b) / rms(b), b the official tensor."""
    if a.ndim == 4 and b.ndim == 3:  # our patch embed returns NCHW, the official one raster tokens
        a = a.flatten(2).transpose(1, 2)
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()).item()


def capture(model, names):
    """Forward hooks that keep each named module's output (the first, for modules returning tuples)."""
    outs = {}

    def keep(name):
        return lambda mod, inp, out: outs.__setitem__(name, (out[0] if isinstance(out, tuple) else out).clone())
    return outs, [model.get_submodule(n).register_forward_hook(keep(n)) for n in names]


class Check:
    def __init__(self, folder, batch, tmp):
        self.folder, self.batch, self.tmp, self.rows = folder, batch, tmp, []
        self.gen = torch.Generator().manual_seed(SEED)
        sys.path[:0] = [STUBS, os.path.join(folder, "classification")]  # stubs first: they shadow any real fla
        import config  # the official classification/config.py
        import models
        import models.vig
        self.config, self.models, self.vig_mod = config, models, models.vig

    def official(self, cfg_file, drop_path=None):
        cfg = self.config._C.clone()
        self.config._update_config_from_file(cfg, os.path.join(self.folder, "classification", "configs", cfg_file))
        if drop_path is not None:
            cfg.defrost()
            cfg.MODEL.DROP_PATH_RATE = drop_path
            cfg.freeze()
        return self.models.build_vig_model(cfg)

    def ours(self, name, sd, **kw):
        path = os.path.join(self.tmp, f"{name}.pth")
        torch.save({"model": sd}, path)  # the official best-checkpoint layout, through our pretrained route
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **kw)
        model.load_state_dict(sd, strict=True)  # strict: the route must have loaded every tensor unchanged
        return model

    def pair(self, model, cfg_file):
        off = self.official(cfg_file)
        perturb(off, self.gen)
        sd = {k: v.float() for k, v in off.state_dict().items()}
        ours = self.ours(model, sd)
        off.load_state_dict(sd)  # both now hold exactly the fp32 checkpoint values
        info = dict(params_official=sum(p.numel() for p in off.parameters()),
                    params_ours=sum(p.numel() for p in ours.parameters()),
                    same_keys_same_order=list(off.state_dict()) == list(ours.state_dict()))
        print(f"{model}: {info}")
        return off, ours, sd, info

    @torch.no_grad()
    def compare(self, model, case, off, ours, names, sizes, train=False, batch=None):
        off, ours = off.double().train(train), ours.double().train(train)
        for hw in sizes:
            x = torch.randn(batch or self.batch, 3, *hw, generator=self.gen, dtype=torch.float64)
            o_out, o_h = capture(off, names)
            u_out, u_h = capture(ours, names)
            torch.manual_seed(1)
            lo = off(x)
            torch.manual_seed(1)
            lu = ours(x)
            for h in o_h + u_h:
                h.remove()
            rel = {n: rel_rmse(u_out[n], o_out[n]) for n in names}
            worst = max(names, key=rel.get)
            row = dict(model=model, case=case, mode="train" if train else "eval", resolution=f"{hw[0]}x{hw[1]}",
                       max_abs_diff=(lu - lo).abs().max().item(), rel_rmse=rel_rmse(lu, lo),
                       argmax_equal=bool((lu.argmax(1) == lo.argmax(1)).all()),
                       worst_module=worst, worst_module_rel_rmse=rel[worst])
            row["first_module_rel_rmse_over_1e-12"] = next((n for n in names if rel[n] > 1e-12), None)
            self.rows.append(row)
            print(f"  {model:10s} {case:44s} {row['mode']:5s} {row['resolution']:7s} max|d|={row['max_abs_diff']:.3e}"
                  f"  relRMSE={row['rel_rmse']:.3e}  worst {worst}={rel[worst]:.1e}")

    def scale_official_eval(self, factor):
        """Scale the official eval kernel's output inside official vig.py only (2 undoes its extra `o /= 2`);
        returns the undo."""
        base = self.vig_mod.bid_fused_recurrent_gla

        def scaled(*a, **k):
            o, s = base(*a, **k)
            return o * factor, s
        self.vig_mod.bid_fused_recurrent_gla = scaled
        return lambda: setattr(self.vig_mod, "bid_fused_recurrent_gla", base)


def run(folder, quick, tmp):
    c = Check(folder, 2 if quick else 4, tmp)
    info = {}
    off, ours, _, info["vig_tiny"] = c.pair("vig_tiny", "vig/vig-t.yaml")
    names = ["patch_embed"] + [f"blocks.{i}" for i in range(12)] + ["norm"]
    sizes = [(224, 224), (256, 256)] + ([] if quick else [(192, 160)])
    c.compare("vig_tiny", "official as released (eval divides by 4)", off, ours, names, sizes)
    # RMSNorm(o/2, eps) = RMSNorm(o, 4*eps): ours with g_norm eps x4 is the official eval exactly
    for blk in ours.blocks:
        blk.attn.g_norm.eps *= 4
    c.compare("vig_tiny", "official as released vs ours g_norm eps x4", off, ours, names, sizes[:1])
    for blk in ours.blocks:
        blk.attn.g_norm.eps /= 4
    undo = c.scale_official_eval(2.0)
    c.compare("vig_tiny", "official with its extra eval /2 undone", off, ours, names, sizes)
    undo()
    c.compare("vig_tiny", "as released", off, ours, names, sizes[:1], train=True)

    off, ours, sd, info["vig_h_tiny"] = c.pair("vig_h_tiny", "vig-h/vig-h-t.yaml")
    names = ["patch_embed"] + [f"layers.{s}.blocks.{j}" for s, d in enumerate((2, 2, 5, 2)) for j in range(d)] + \
        [f"layers.{s}.downsample" for s in range(3)] + ["classifier.norm"]
    sizes = [(224, 224)] + ([] if quick else [(256, 256), (200, 232)])
    c.compare("vig_h_tiny", "as released", off, ours, names, sizes)
    # train mode needs drop path 0 on both sides: the config's 0.2 draws masks in a different order
    off0 = c.official("vig-h/vig-h-t.yaml", drop_path=0.0)
    off0.load_state_dict(sd)
    ours0 = c.ours("vig_h_tiny", sd, drop_path_rate=0.0)
    c.compare("vig_h_tiny", "drop path 0", off0, ours0, names, [(224, 224)], train=True, batch=2)
    return info, c.rows


def write_json(report, path):
    """Atomic: a temp file beside `path`, then os.replace (never a half-written result)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, metavar="DIR",
                    help="a checkout of github.com/hustvl/ViG (the folder that contains classification/)")
    ap.add_argument("--quick", action="store_true", help="batch 2, fewer resolutions")
    ap.add_argument("--out", metavar="FILE.json", help="write the results here (atomically)")
    args = ap.parse_args()
    folder = os.path.abspath(args.official)
    check_folder(ap, folder)
    warnings.filterwarnings("ignore")  # timm's deprecation notices for the official code's old import paths
    torch.set_num_threads(1)  # float64 scans in Python loops: threads buy little, and CI shares its cores
    torch.manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        info, rows = run(folder, args.quick, tmp)
    report = dict(check="official_vig", device="cpu", dtype="float64", quick=args.quick, batch=2 if args.quick else 4,
                  seed=SEED, torch=torch.__version__, timm=timm.__version__,
                  official=dict(path=folder, commit=official_commit(folder)),
                  rel_rmse="rms(ours - official) / rms(official), logits", models=info, results=rows)
    if args.out:
        write_json(report, args.out)
        print(f"wrote {args.out}")
    bad = [r for r in rows if "released (eval divides by 4)" not in r["case"] and r["rel_rmse"] > 1e-12]
    if bad:  # every case but the known official eval quirk must agree to float64 rounding
        print(f"MISMATCH beyond 1e-12 relative RMSE: {bad}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
