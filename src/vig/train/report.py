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
        self.rows, self.steps = [], []
        self.steps_path = Path(out_dir) / "steps.csv"
        if self.steps_path.exists():
            with open(self.steps_path, newline="") as f:
                self.steps = [dict(r) for r in csv.DictReader(f)]
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def add_step(self, epoch_float, step, loss, lr):
        """Training loss and lr inside an epoch (kept in memory; written with each checkpoint and epoch row)."""
        self.steps.append({"epoch": epoch_float, "step": step, "loss": loss, "lr": lr})
        if self.tb:
            self.tb.add_scalar("train/loss_step", loss, step)
            self.tb.add_scalar("train/lr_step", lr, step)

    def add(self, row: dict):
        epoch = int(row["epoch"])
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        _write_csv(self.path, COLUMNS, self.rows)
        self.write_steps()
        if self.tb:
            for k in COLUMNS[1:]:
                if row.get(k) not in (None, ""):
                    self.tb.add_scalar(k, float(row[k]), int(row["epoch"]))
            self.tb.flush()

    def write_steps(self):
        """steps.csv, whole and atomically; with each checkpoint, so a run killed mid-epoch keeps its points."""
        # a resumed epoch may repeat step points from before the kill: keep the latest of each step
        latest = {int(r["step"]): r for r in self.steps}
        self.steps = [latest[k] for k in sorted(latest)]
        _write_csv(self.steps_path, ["epoch", "step", "loss", "lr"], self.steps)

    def close(self):
        if self.tb:
            self.tb.close()


def _write_csv(path, columns, rows):
    import io
    from vig.train.checkpointing import atomic_write_text
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


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


def plot_curves(rows, path, steps=()):
    """Loss, top-1 and lr against epoch (plus the in-epoch training loss and lr), written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name):
        return [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if steps:
        xs = [float(r["epoch"]) for r in steps]
        axes[0].plot(xs, [float(r["loss"]) for r in steps], lw=0.8, alpha=0.5, color="tab:blue", label="train (steps)")
    for name, label in (("train_loss", "train (epoch mean)"), ("val_loss", "val")):
        pts = col(name)
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=label)
    axes[0].set_title("loss")
    for name, label in (("top1", "model"), ("ema_top1", "EMA")):
        pts = col(name)
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=label)
    axes[1].set_title("top-1 accuracy (%)")
    if steps:
        axes[2].plot(xs, [float(r["lr"]) for r in steps])
    else:
        pts = col("lr")
        if pts:
            axes[2].plot(*zip(*pts), marker="o")
    axes[2].set_title("learning rate")
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
