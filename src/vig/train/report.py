"""What a person sees: metrics.csv, TensorBoard events, the one-line epoch summary and curves.png."""
import csv
import os
from pathlib import Path

COLUMNS = ["epoch", "train_loss", "lr", "val_loss", "top1", "top5", "ema_top1", "ema_top5", "skipped_steps",
           "epoch_time_s", "train_img_per_s"]


class MetricsLog:
    """Rank 0 only. metrics.csv is rewritten whole (atomically) each epoch, so a resumed run keeps one row per epoch."""

    def __init__(self, out_dir, tensorboard=True):
        self.path = Path(out_dir) / "metrics.csv"
        self.rows = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def add(self, row: dict):
        self.rows = [r for r in self.rows if int(r["epoch"]) < int(row["epoch"])] + [row]
        from vig.train.checkpointing import atomic_write_text
        import io
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
        atomic_write_text(self.path, buf.getvalue())
        if self.tb:
            for k in COLUMNS[1:]:
                if row.get(k) not in (None, ""):
                    self.tb.add_scalar(k, float(row[k]), int(row["epoch"]))
            self.tb.flush()

    def close(self):
        if self.tb:
            self.tb.close()


def summary_line(row, epochs, best):
    s = f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}"
    if row.get("top1") is not None:
        s += f"  val loss {row['val_loss']:.4f}  top1 {row['top1']:.2f}  top5 {row['top5']:.2f}"
    if row.get("ema_top1") is not None:
        s += f"  ema top1 {row['ema_top1']:.2f}"
    s += f"  best {best:.2f}  {row['epoch_time_s']:.0f}s  {row['train_img_per_s']:.0f} img/s"
    if row.get("skipped_steps"):
        s += f"  skipped {row['skipped_steps']} non-finite steps"
    return s


def plot_curves(rows, path):
    """Loss, top-1 and lr against epoch, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name):
        return [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, label in (("train_loss", "train"), ("val_loss", "val")):
        pts = col(name)
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=label)
    axes[0].set_title("loss")
    for name, label in (("top1", "model"), ("ema_top1", "EMA")):
        pts = col(name)
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=label)
    axes[1].set_title("top-1 accuracy (%)")
    pts = col("lr")
    if pts:
        axes[2].plot(*zip(*pts), marker="o")
    axes[2].set_title("learning rate (end of epoch)")
    from matplotlib.ticker import MaxNLocator
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(".curves.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
