"""PNG plots of benchmark results: the paper's Fig. 4 panels (FLOPs, memory, throughput against resolution)
and throughput against the paper's published top-1. Written atomically; matplotlib runs headless."""
import os

from vig.atomic import atomic_write_path
from vig.bench import paper


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return atomic_write_path(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))


def _series(results, model, mode):
    """Points of one model and mode, one per resolution (the largest batch that ran at that resolution)."""
    best = {}
    for p in results:
        if p["model"] != model or p["mode"] != mode:
            continue
        prev = best.get(p["img_size"])
        if prev is None or (p.get("status") == "ok", p["batch"]) > (prev.get("status") == "ok", prev["batch"]):
            best[p["img_size"]] = p
    return [best[s] for s in sorted(best)]


def _title_suffix(env):
    return f"{env.get('device_name', '?')}, torch {env.get('torch', '?')}"


def _run_label(data, mode):
    """The settings a reader needs beside the numbers: batch (the largest that ran at each size when several were
    asked), compile mode and CPU threads."""
    cfg = data["config"]
    batches = sorted({p["batch"] for p in data["results"] if p["mode"] == mode})
    parts = [f"bs {batches[0]}" if len(batches) == 1 else f"largest of bs {'/'.join(map(str, batches))} a size"]
    if cfg.get("compile"):
        parts.append(f"compiled ({cfg.get('compile_mode')})")
    if str(data["env"].get("device", "")).startswith("cpu") and cfg.get("threads"):
        parts.append(f"{cfg['threads']} thread{'s' if cfg['threads'] > 1 else ''}")
    return ", ".join(parts)


def default_mode(results):
    """'infer' where it was measured, else the mode that was (a --train-only run has train points only)."""
    modes = {p["mode"] for p in results}
    return "train" if modes == {"train"} else "infer"


def _no_data(ax):
    ax.text(0.5, 0.5, "no data", ha="center", va="center", color="gray", transform=ax.transAxes)


def plot_resolution(data, path, models=None, mode=None):
    """Fig. 4 (a)-(c): GMACs per image, peak memory and throughput against resolution.

    A panel with nothing to plot (--no-flops, CPU memory, points skipped by --time-limit) says "no data"."""
    plt = _pyplot()
    results = data["results"]
    mode = mode or default_mode(results)
    models = models or sorted({p["model"] for p in results})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("gmacs_fwd", "GMACs per image (fwd, incl. BiGLA)"),
              ("peak_mem_mib", "peak memory (GiB) at the batch noted"),
              ("img_per_s", f"{mode} throughput (img/s)")]
    for ax, (key, ylabel) in zip(axes, panels):
        plotted = False
        for model in models:
            pts = _series(results, model, mode)
            ok = [p for p in pts if p.get("status") == "ok" or (key == "gmacs_fwd" and key in p)]
            xs = [p["img_size"] for p in ok if p.get(key) is not None]
            ys = [p[key] / (1024 if key == "peak_mem_mib" else 1) for p in ok if p.get(key) is not None]
            if not ys:  # an empty line would still get a legend entry
                continue
            plotted = True
            line, = ax.plot(xs, ys, marker="o", label=paper.label(model))
            oom = [p["img_size"] for p in pts if p.get("status") == "oom"]
            if oom and ys and key != "gmacs_fwd":  # FLOPs are counted on meta even where the run OOMs
                ax.plot(oom, [max(ys)] * len(oom), "x", color=line.get_color(), markersize=10,
                        label=f"{paper.label(model)} OOM")
            if key == "peak_mem_mib":
                for p in ok:
                    if p.get(key) is not None:
                        ax.annotate(f"bs{p['batch']}", (p["img_size"], p[key] / 1024), fontsize=7,
                                    textcoords="offset points", xytext=(3, 3))
        if key == "img_per_s" and len(models) == 2:
            _annotate_ratio(ax, results, models, mode)
        sizes = sorted({p["img_size"] for p in results})
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes], rotation=45, fontsize=8)
        if key == "peak_mem_mib" and data["env"].get("device", "").startswith("cpu"):
            ax.text(0.5, 0.5, "peak memory is measured on CUDA only", ha="center", transform=ax.transAxes)
        elif not plotted:
            _no_data(ax)
        ax.set_xlabel("image resolution (px)")
        ax.set_ylabel(ylabel)
        if key != "peak_mem_mib" and plotted:  # matplotlib cannot log-scale an empty axis
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=8)
    fig.suptitle(f"{mode}, {data['config'].get('dtype')}, {_run_label(data, mode)} ({_title_suffix(data['env'])})")
    out = _save(fig, path)
    plt.close(fig)
    return out


def _ratio_order(models):
    """(numerator, denominator): ViG over the other model, the direction the README's "ViG / DeiT" columns use,
    whatever order the models were listed or sorted in."""
    first, second = models
    return (second, first) if _is_vig(second) and not _is_vig(first) else (first, second)


def _is_vig(model):
    return paper.label(model).startswith("ViG") or model.startswith("vig")


def _annotate_ratio(ax, results, models, mode):
    """Write the ViG / other throughput ratio above each resolution where both models ran at the same batch."""
    top, bottom = _ratio_order(models)
    a, b = ({p["img_size"]: p for p in _series(results, m, mode) if p.get("status") == "ok"} for m in (top, bottom))
    shown = False
    for size in sorted(set(a) & set(b)):
        if a[size]["batch"] == b[size]["batch"]:
            y = max(a[size]["img_per_s"], b[size]["img_per_s"])
            ax.annotate(f"{a[size]['img_per_s'] / b[size]['img_per_s']:.2f}x", (size, y), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
            shown = True
    if shown:  # a bare "7.93x" does not say which way round it is
        ax.text(0.02, 0.02, f"ratios: {paper.label(top)} / {paper.label(bottom)} throughput", fontsize=8,
                transform=ax.transAxes)


def plot_accuracy(data, path, img_size=None, mode=None):
    """Measured throughput against the paper's published top-1 (hollow: the paper's RTX 4090 numbers).

    img_size defaults to 224 when measured there, else the smallest measured resolution."""
    plt = _pyplot()
    mode = mode or default_mode(data["results"])
    if img_size is None:
        sizes = {p["img_size"] for p in data["results"] if p.get("status") == "ok"}
        img_size = 224 if 224 in sizes or not sizes else min(sizes)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    families = {"ViG": "tab:red", "ViG-H": "tab:orange", "DeiT": "tab:blue"}
    plotted = False
    for family, color in families.items():
        ours, theirs = [], []
        for name, (label, acc, tp_paper, _) in paper.PUBLISHED.items():
            if label.rsplit("-", 1)[0] != family:
                continue
            pts = [p for p in data["results"] if p["model"] == name and p["mode"] == mode
                   and p["img_size"] == img_size and p.get("status") == "ok"]
            if pts:
                best = max(pts, key=lambda p: p["batch"])
                ours.append((best["img_per_s"], acc, label))
            if mode == "infer":  # the paper's numbers are inference throughput
                theirs.append((tp_paper, acc, label))
        # the paper's throughputs are 224² figures whatever img_size was measured here
        for pts, style, suffix in ((ours, "o-", f"measured, {img_size}²"), (theirs, "o--", "paper, RTX 4090, 224²")):
            if not pts:
                continue
            pts.sort()
            plotted = True
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color,
                    mfc=color if pts is ours else "none", label=f"{family} ({suffix})")
            if pts is ours:
                for tp, acc, label in pts:
                    ax.annotate(label, (tp, acc), fontsize=8, textcoords="offset points", xytext=(4, -10))
    if plotted:  # matplotlib cannot log-scale an empty axis
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    else:
        _no_data(ax)
    ax.set_xlabel(f"{mode} throughput (img/s): measured at {img_size}², paper points at 224²"
                  if mode == "infer" and img_size != 224 else f"{mode} throughput at {img_size}² (img/s)")
    ax.set_ylabel("ImageNet-1K top-1 (%, published)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{data['config'].get('dtype')}, {_title_suffix(data['env'])}", fontsize=9)
    out = _save(fig, path)
    plt.close(fig)
    return out


PLOT_SUFFIXES = ("_resolution.png", "_accuracy.png", "_resolution_train.png")


def plot_all(data, out_dir, stem):
    """Both figures for one result file (and the training one when both modes ran); returns the written paths."""
    resolution, accuracy, resolution_train = (os.path.join(out_dir, stem + s) for s in PLOT_SUFFIXES)
    written = [plot_resolution(data, resolution), plot_accuracy(data, accuracy)]
    if {p["mode"] for p in data["results"]} == {"infer", "train"}:  # the first figure shows inference
        written.append(plot_resolution(data, resolution_train, mode="train"))
    return written


def stale_plots(out_dir, stem, written):
    """The stem's figures left by an earlier run that this one did not draw (--no-plots, or no training points):
    beside the new JSON they would show other numbers."""
    drawn = {os.path.abspath(w) for w in written if w}  # _save returns absolute paths; --out may be relative
    paths = (os.path.join(out_dir, stem + s) for s in PLOT_SUFFIXES)
    return [p for p in paths if os.path.abspath(p) not in drawn and os.path.exists(p)]
