"""Training helpers for the downstream engines: distributed setup and atomic checkpoints/RNG state come from the
classification engine (vig.train); AMP, AdamW with layer-wise lr decay, the mmdet/mmseg lr schedules and an
iteration-level metrics.csv/curves.png are here (vig.train's MetricsLog has fixed per-epoch classification
columns)."""
import csv
import math
import os
import random
import re
from pathlib import Path

import torch
import torch.distributed as dist

from vig.errors import UsageError
from vig.train.run_folder import check_not_locked, take_lock


# ---------------------------------------------------------------- distributed
def setup_distributed(device_arg="auto"):
    """(rank, world_size, device) through the classification engine's torchrun support (vig.train.distributed):
    under torchrun (WORLD_SIZE>1) it joins the NCCL (GPU) or gloo (CPU) process group."""
    from vig.train.distributed import init
    d = init(device_arg)
    return d.rank, d.world, d.device


def is_main():
    return not dist.is_initialized() or dist.get_rank() == 0


def all_gather_objects(obj):
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------- AMP
def resolve_amp(amp, device):
    """The classification engine's convention: unset means bf16 on GPU and none on CPU."""
    return amp if amp not in (None, "auto") else ("bf16" if device.type == "cuda" else "none")


def autocast(device, amp):
    from vig.train.loop import autocast as train_autocast
    return train_autocast(device, amp)


def grad_scaler(device, amp):
    return torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))


# ---------------------------------------------------------------- optimizer
_BLOCK_RE = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_STAGE_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.(blocks\.(\d+)\.|downsample)")


def backbone_layer_ids(names):
    """name -> layer id for backbone parameter names: stem/pos_embed 0, block i -> i+1 in network order
    (ViG `blocks.i`, ViG-H `layers.s.blocks.j`; a ViG-H downsample shares the id of the block before it).
    Returns (ids, num_layers)."""
    order = []
    for n in names:
        m = _STAGE_RE.search(n)
        if m and m.group(3) is not None:
            order.append((int(m.group(1)), int(m.group(3))))
        elif (m := _BLOCK_RE.search(n)):
            order.append((0, int(m.group(1))))
    order = sorted(set(order))
    if not order:
        raise UsageError("layer-wise lr decay needs a backbone with `blocks.i` or `layers.s.blocks.j` parameters")
    rank = {k: i + 1 for i, k in enumerate(order)}
    last_in_stage = {}
    for s, j in order:
        last_in_stage[s] = rank[(s, j)]
    ids = {}
    for n in names:
        m = _STAGE_RE.search(n)
        if m and m.group(3) is not None:
            ids[n] = rank[(int(m.group(1)), int(m.group(3)))]
        elif m:  # downsample after stage s
            ids[n] = last_in_stage.get(int(m.group(1)), 0)
        elif (b := _BLOCK_RE.search(n)):
            ids[n] = rank[(0, int(b.group(1)))]
        elif "patch_embed" in n or "pos_embed" in n or "cls_token" in n:
            ids[n] = 0
        else:  # final norms and anything after the last block
            ids[n] = len(order) + 1
    return ids, len(order)


def no_weight_decay(name, p):
    return p.ndim <= 1 or name.endswith("pos_embed") or name.endswith("cls_token")


def build_adamw(model, backbone_prefix, lr, weight_decay, layer_decay=1.0, betas=(0.9, 0.999)):
    """AdamW; norms/biases/pos_embed without weight decay. With layer_decay < 1 a backbone parameter in layer
    l (of L) gets lr * layer_decay ** (L + 1 - l); everything outside the backbone keeps the full lr."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    bb = [n for n, _ in named if n.startswith(backbone_prefix)]
    ids, num_layers = (backbone_layer_ids(bb) if layer_decay < 1.0 else ({}, 0))
    groups = {}
    for n, p in named:
        lid = ids.get(n, num_layers + 1)
        scale = layer_decay ** (num_layers + 1 - lid) if layer_decay < 1.0 else 1.0
        wd = 0.0 if no_weight_decay(n, p) else weight_decay
        g = groups.setdefault((scale, wd), {"params": [], "weight_decay": wd, "lr_scale": scale})
        g["params"].append(p)
    for g in groups.values():
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(list(groups.values()), lr=lr, betas=betas, weight_decay=weight_decay)


def set_lr(optimizer, lr):
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def warmup_factor(it, warmup_iters, warmup_ratio):
    if it >= warmup_iters or warmup_iters <= 0:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters


def step_lr(base, it, iters_per_epoch, milestones, gamma=0.1, warmup_iters=500, warmup_ratio=1e-3):
    """mmdet 1x: linear warmup, then x gamma at each milestone epoch."""
    epoch = it // max(iters_per_epoch, 1)
    return base * warmup_factor(it, warmup_iters, warmup_ratio) * gamma ** sum(epoch >= m for m in milestones)


def poly_lr(base, it, total, power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6):
    """mmseg poly with linear warmup (the ADE20K UperNet recipe)."""
    frac = min(it, total) / max(total, 1)
    lr = (base - min_lr) * (1 - frac) ** power + min_lr
    return lr * warmup_factor(it, warmup_iters, warmup_ratio)


# ---------------------------------------------------------------- checkpoints and logs
def atomic_torch_save(obj, path):
    """Shared with the classification engine: temp file + fsync + os.replace."""
    from vig.train.checkpointing import atomic_torch_save as save
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save(obj, path)


def rng_state():
    from vig.train.checkpointing import rng_state as get
    return get()


def set_rng_state(state):
    from vig.train.checkpointing import set_rng_state as put
    put(state)


def load_training_checkpoint(path, mmap=False):
    """mmap: map the file instead of reading it (a caller that needs only its config reads a few pages)."""
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        raise UsageError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UsageError(f"{path} is not a `vig det/seg train` checkpoint (no 'model'/'config' entries)")
    return ckpt


def start_run(cfg):
    """Distributed setup, AMP choice, batch check and per-rank seeds shared by det and seg training."""
    rank, world, device = setup_distributed(cfg.get("device", "auto"))
    cfg["amp"] = resolve_amp(cfg.get("amp"), device)
    if cfg["batch_size"] % world:
        raise UsageError(f"--batch-size {cfg['batch_size']} is not divisible by the {world} processes")
    torch.manual_seed(cfg.get("seed", 0) + rank)
    random.seed(cfg.get("seed", 0) + rank)
    return rank, world, device


RUN_FILES = ("last.pth", "metrics.csv", "curves.png")


def check_run_dir(cfg):
    """Before any loading: (path of last.pth, the checkpoint to resume from or None, its contents or None).
    Refuses an --out that is a file, and a folder holding a run unless --resume or --overwrite says what to do
    with it. Creates nothing (make_run_dir does, once startup has succeeded). resume='auto' picks last.pth when
    it exists."""
    from vig.atomic import writable_folder
    out = writable_folder(cfg["out_dir"], "--out")
    check_not_locked(Path(out), "--out")
    last = os.path.join(out, "last.pth")
    resume = cfg.get("resume")
    if resume and cfg.get("overwrite"):
        raise UsageError("--resume and --overwrite contradict each other: give one")
    ours = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if resume == "auto":
        resume = last if os.path.exists(last) else None
        if resume is None and ours:
            # run files without last.pth: a run stopped before its first checkpoint, or one still in it. Starting
            # over here would mix two runs' metrics, or write under a live one
            raise UsageError(f"--out {out} holds {', '.join(ours)} but no last.pth to resume from; pass --overwrite "
                             f"(without --resume) to replace that run")
    if ours and not resume and not cfg.get("overwrite"):
        if not os.path.exists(last):  # nothing to resume: suggesting --resume auto only led to the error above
            raise UsageError(f"--out {out} holds {', '.join(ours)} of a run that stopped before its first checkpoint "
                             f"(or is still before it); pass --overwrite to replace it")
        raise UsageError(f"--out {out} already holds a run ({', '.join(ours)}); pass --resume auto to continue it "
                         f"or --overwrite to replace it")
    ckpt = load_training_checkpoint(resume) if resume else None
    if ckpt is not None:
        check_task(ckpt["config"], resume, cfg["task"])
    return last, resume, ckpt


def make_run_dir(cfg):
    """Rank 0, once data, model and weights have loaded: the folder exists and is locked (vig.train.run_folder's
    lock), then --overwrite clears the old run's files (so a new run that dies early leaves no mix of two runs)."""
    out = cfg["out_dir"]
    os.makedirs(out, exist_ok=True)
    take_lock(Path(out), "--out")  # before removing anything: another run may have started since check_run_dir
    if cfg.get("overwrite"):
        for f in RUN_FILES:
            if os.path.exists(os.path.join(out, f)):
                os.unlink(os.path.join(out, f))


def check_task(ckpt_cfg, path, task):
    if ckpt_cfg.get("task", task) != task:
        kind = {"det": "detection", "seg": "segmentation"}[task]
        raise UsageError(f"{path} is a {ckpt_cfg.get('task')} checkpoint, not a {kind} one")


def check_same_model(ckpt_cfg, cfg, defaults, path):
    """A resumed run must build the checkpoint's model: name the first option that differs (a bare
    load_state_dict error lists hundreds of keys)."""
    for key, default in defaults.items():
        was, now = ckpt_cfg.get(key, default), cfg.get(key, default)
        if was != now:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{path} was trained with {flag} {was}, this run has {flag} {now}; use the same "
                             f"options to resume, or another --out")


def load_model_state(model, state, path):
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UsageError(f"{path} does not fit this model: {str(e).splitlines()[0]}") from None


def load_task_model(path, task, build, device):
    """A `vig det|seg train` checkpoint rebuilt with build(cfg) -> (model, ...); refuses the other task's file."""
    ckpt = load_training_checkpoint(path)
    cfg = ckpt["config"]
    check_task(cfg, path, task)
    model = build(cfg)[0]
    load_model_state(model, ckpt["model"], path)
    return model.to(device), cfg


def plain_worker_errors(loader):
    """Iterate `loader`; a UsageError raised in a worker process arrives re-wrapped as "Caught UsageError in
    DataLoader worker process N" plus the worker's traceback: give back its own one-line message."""
    try:
        yield from loader
    except UsageError as e:
        text = str(e)
        if not text.startswith("Caught UsageError"):
            raise
        last = text.rstrip().splitlines()[-1]
        raise UsageError(last.split("UsageError: ", 1)[-1]) from None


def unwrap(model):
    return model.module if hasattr(model, "module") else model


class MetricsLog:
    """Appends rows to out_dir/metrics.csv and redraws curves.png. A fresh run starts the file anew; a resumed
    one keeps the rows up to the checkpoint's iteration (rows logged after it, by the run that died, go)."""

    def __init__(self, out_dir, fields, resume_iter=None):
        self.path = os.path.join(out_dir, "metrics.csv")
        self.fields = list(fields)
        rows = []
        if resume_iter is not None and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("iter") and int(r["iter"]) <= resume_iter]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row):
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)

    def plot(self, x_field, y_fields):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        with open(self.path) as f:
            rows = list(csv.DictReader(f))
        ys = [y for y in y_fields if any(r.get(y) not in ("", None) for r in rows)]
        if not rows or not ys:
            return
        fig, axes = plt.subplots(1, len(ys), figsize=(4 * len(ys), 3), squeeze=False)
        for ax, y in zip(axes[0], ys):
            pts = [(float(r[x_field]), float(r[y])) for r in rows if r.get(y) not in ("", None)]
            ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None)
            ax.set_xlabel(x_field)
            ax.set_title(y)
        fig.tight_layout()
        out = os.path.join(os.path.dirname(self.path), "curves.png")
        tmp = out + ".tmp.png"
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        os.replace(tmp, out)


def finite_or_raise(loss, it):
    from vig.train.loop import TrainingAborted
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingAborted(f"loss is {value} at iteration {it}; lower the lr or use --amp bf16/none")


def plain_config(cfg):
    """The checkpoint's config: only plain python values, so torch.load(weights_only=True) can read it."""
    keep = (str, int, float, bool, type(None), list, tuple, dict)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if isinstance(v, keep)}
