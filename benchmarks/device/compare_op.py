"""Side by side: bench_bigla.py result folders from one device call, GPU ms per method and shape.
Usage: compare_op.py NEW_DIR [BASE_DIR]
- With BASE_DIR (BASE's code in its own process): each method against BASE's, ratio new / base.
- Without: each variant (e.g. ours_gate_logits_wsdot_t) against the method it varies in the same run, and ours
  against fla-core's two-pass where the run has it (fla / ours, the issue's "faster by")."""
import glob
import json
import sys

FLA = "fla_chunk_two_pass"
KEYS = ("fwd_gpu_ms", "fwd_bwd_gpu_ms")


def load(folder):
    files = sorted(glob.glob(f"{folder}/bigla_*.json"))
    return json.load(open(files[0]))["results"] if files else {}


def base_method(method, base_row, same_run=False):
    """A variant is compared with the method it varies: the longest prefix (not itself within one run, and never
    another variant: bench_bigla records a variant's knobs as its "env", and wsdot is a prefix of wsdot_t)."""
    matches = [m for m in base_row if ((method == m and not same_run) or method.startswith(m + "_"))
               and not (same_run and "env" in base_row[m])]
    return max(matches, key=len, default=None)


def _cell(n, b):
    return f"{n:.3f}" + (f" / {b:.3f} {n / b:.2f}x" if b and n else "")


def main(new_dir, base_dir=None):
    new = load(new_dir)
    base = load(base_dir) if base_dir else new
    print(f"{'shape':16} {'method':34} {'fwd GPU ms':>18} {'fwd+bwd GPU ms':>18}  "
          f"({'new / base' if base_dir else 'variant / its method'})")
    for shape, row in new.items():
        for method, r in row.items():
            if method == "bandwidth_floor":
                continue
            if "error" in r:
                print(f"{shape:16} {method:34} {r.get('error', '')[:60]}")
                continue
            ref = base.get(shape, {}).get(base_method(method, base.get(shape, {}), not base_dir), {})
            cells = [_cell(r.get(key), ref.get(key)) for key in KEYS]
            print(f"{shape:16} {method:34} {cells[0]:>18} {cells[1]:>18}")
        fla, ours = row.get(FLA, {}), row.get("ours", {})
        if fla.get("fwd_bwd_gpu_ms") and ours.get("fwd_bwd_gpu_ms"):
            faster = [fla[key] / ours[key] for key in KEYS]
            print(f"{shape:16} {'ours faster than fla two-pass by':34} {faster[0]:>17.2f}x {faster[1]:>17.2f}x")


if __name__ == "__main__":
    main(*sys.argv[1:3])
