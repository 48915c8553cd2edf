"""Side by side: two bench_bigla.py result folders (this tree, BASE) from one device call, GPU ms per method and
shape, and the ratio new / base. Usage: compare_op.py NEW_DIR BASE_DIR"""
import glob
import json
import sys


def load(folder):
    files = sorted(glob.glob(f"{folder}/bigla_*.json"))
    return json.load(open(files[0]))["results"] if files else {}


def base_method(method, base_row):
    """A variant (e.g. ours_gate_logits_bw1) is compared with the base's method it varies: the longest prefix."""
    matches = [m for m in base_row if method == m or method.startswith(m + "_")]
    return max(matches, key=len, default=None)


def main(new_dir, base_dir):
    new, base = load(new_dir), load(base_dir)
    print(f"{'shape':16} {'method':34} {'fwd GPU ms':>18} {'fwd+bwd GPU ms':>18}  (new / base)")
    for shape, row in new.items():
        for method, r in row.items():
            if method == "bandwidth_floor":
                continue
            if "error" in r:
                print(f"{shape:16} {method:34} {r.get('error', '')[:60]}")
                continue
            cells = []
            for key in ("fwd_gpu_ms", "fwd_bwd_gpu_ms"):
                b = base.get(shape, {}).get(base_method(method, base.get(shape, {})), {}).get(key)
                n = r.get(key)
                cells.append(f"{n:.3f}" + (f" / {b:.3f} {n / b:.2f}x" if b and n else ""))
            print(f"{shape:16} {method:34} {cells[0]:>18} {cells[1]:>18}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
