"""Train-time structure of the official models against ours, all six released configs: each module's norm eps, DropPath
rate and Dropout p, by module name (check_official.py runs train mode with drop path 0 and dropout off, so it cannot
see these). Prints the entries that differ.

    python3 benchmarks/official_check/train_structure.py --official /path/ViG
"""
import argparse
import os
import warnings

import timm
import torch

import check_official  # this folder: on sys.path when run as a script

CONFIGS = {"vig_tiny": "vig/vig-t.yaml", "vig_small": "vig/vig-s.yaml", "vig_base": "vig/vig-b.yaml",
           "vig_h_tiny": "vig-h/vig-h-t.yaml", "vig_h_small": "vig-h/vig-h-s.yaml", "vig_h_base": "vig-h/vig-h-b.yaml"}


def table(model):
    rows = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "eps"):
            rows[name] = ("eps", type(mod).__name__, mod.eps)
        if type(mod).__name__ == "DropPath":
            rows[name] = ("droppath", round(float(mod.drop_prob), 6))
        if isinstance(mod, torch.nn.Dropout):
            rows[name] = ("dropout", mod.p)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, metavar="DIR", help="the folder that contains classification/")
    args = ap.parse_args()
    folder = os.path.abspath(args.official)
    check_official.check_folder(ap, folder)
    warnings.filterwarnings("ignore")  # timm's deprecation notices for the official code's old import paths
    check = check_official.Check(folder, batch=1, tmp=None)
    for name, cfg in CONFIGS.items():
        off, ours = table(check.official(cfg)), table(timm.create_model(name))
        diffs = [(k, off.get(k), ours.get(k)) for k in sorted(set(off) | set(ours)) if off.get(k) != ours.get(k)]
        print(f"{name}: {len(off)} official eps/droppath/dropout entries, {len(diffs)} differ (name, official, ours)")
        for d in diffs[:12]:
            print("   ", d)


if __name__ == "__main__":
    main()
