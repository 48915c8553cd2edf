"""Prints the gate backward's fastest persistent grid as VIG_GATE_BWD wants it ("tile,programs_per_sm") when
bench_fused_layers.py timed it faster than the default tile's launch for MODEL; prints nothing otherwise.
Usage: best_gate_grid.py FUSED_LAYERS_JSON MODEL"""
import json
import sys


def main(path, model):
    report = json.load(open(path))
    cases = report["gate"][model]
    default = cases[str(report["default_gate_tile"])]["bwd_ms"]
    persistent = {k: v["bwd_ms"] for k, v in cases.items() if "x" in k}
    if not persistent:
        return
    best = min(persistent, key=persistent.get)
    print(f"gate backward {model}: default {default:.4f} ms, best persistent {best} {persistent[best]:.4f} ms",
          file=sys.stderr)
    if persistent[best] < default:
        print(best.replace("x", ","))


if __name__ == "__main__":
    main(*sys.argv[1:3])
