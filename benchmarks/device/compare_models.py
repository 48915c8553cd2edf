"""One table from several `vig bench` result files of one device call: img/s, step ms, peak MiB per model, and
each ViG row's ratio to the DeiT of its size: the one in its own file (the same process) where there is one, else
the last one read from the other files, marked "other process" (session 38 found the old table pairing every ViG row
with the last DeiT read, whatever its file).
Usage: compare_models.py FILES..."""
import json
import os
import sys

DEIT_OF = {"vig_tiny": "deit_tiny_patch16_224", "vig_small": "deit_small_patch16_224",
           "vig_base": "deit_base_patch16_224"}


def main(paths):
    rows = []
    for path in paths:
        for r in json.load(open(path))["results"]:
            rows.append((os.path.basename(path)[:-5], r))
    deits = [(name, r) for name, r in rows if r.get("status") == "ok" and r["model"].startswith("deit")]
    for name, r in rows:
        if r.get("status") != "ok":
            print(f"{name:44} {r['model']:24} {r.get('status')} {str(r.get('error', ''))[:80]}")
            continue
        key = (DEIT_OF.get(r["model"]), r["mode"], r["img_size"], r["batch"])
        match = [(n, d) for n, d in deits if (d["model"], d["mode"], d["img_size"], d["batch"]) == key]
        own = [d for n, d in match if n == name]
        deit = own[-1] if own else (match[-1][1] if match else None)
        where = "" if own else " (other process)"
        ratio = f"{r['img_per_s'] / deit['img_per_s']:.3f}x {deit['model'][:9]}{where}" if deit else ""
        print(f"{name:44} {r['model']:24} {r['mode']:5} {r['img_per_s']:9.0f} img/s {r['ms_per_step']:7.2f} ms "
              f"{r['peak_mem_mib']:8.0f} MiB {ratio}")


if __name__ == "__main__":
    main(sys.argv[1:])
