"""`vig train`: one run from a resolved TrainConfig, on one process or under torchrun."""
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from vig.errors import UsageError
from vig.train import checkpointing as ck
from vig.train import config as config_mod
from vig.train import distributed, setup
from vig.train.loop import evaluate, train_one_epoch
from vig.train.report import MetricsLog, plot_curves, summary_line
from vig.train.resume_checks import SCHEDULE_KEYS, changed_settings, check_same_run
from vig.train.run_folder import check_output, make_output, release_lock



def set_determinism(cfg, device):
    torch.backends.cudnn.benchmark = not cfg.deterministic and device.type == "cuda"
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def make_loaders(cfg, d, train_ds, val_ds):
    from torch.utils.data import DataLoader, Subset
    from vig.data.build import is_fmnist
    from vig.data.sampling import SeededDataset, ShardSampler, eval_shard
    total = cfg.batch_size * d.world
    if total > len(train_ds):
        raise UsageError(f"batch size {cfg.batch_size} x {d.world} process(es) = {total} is larger than the "
                         f"training set ({len(train_ds)} images); lower --batch-size")
    workers = cfg.workers
    if workers is None:  # decoding JPEGs needs workers; in-memory Fashion-MNIST tensors do not
        workers = 0 if is_fmnist(cfg.data) else min(8, max(1, (os.cpu_count() or 1) // d.world))
    seeded = SeededDataset(train_ds, cfg.seed)
    sampler = ShardSampler(len(train_ds), d.rank, d.world, shuffle=True, seed=cfg.seed, batch_size=cfg.batch_size)
    pin = d.device.type == "cuda"
    train = DataLoader(seeded, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
                       drop_last=True, persistent_workers=False)
    val = DataLoader(Subset(val_ds, eval_shard(len(val_ds), d.rank, d.world)), batch_size=max(cfg.batch_size, 256),
                     shuffle=False, num_workers=workers, pin_memory=pin)
    return train, val, seeded, sampler


def run(cfg):
    d = distributed.init(cfg.device)
    log = print if d.main else (lambda *a, **k: None)
    try:
        return _run(cfg, d, log)
    finally:
        if d.main:
            release_lock(cfg.output)
        distributed.shutdown(d)


def _run(cfg, d, log):
    from vig.data.build import build_train_val, is_fmnist, model_data_config
    out = Path(cfg.output)
    check_output(cfg)
    set_determinism(cfg, d.device)
    amp = cfg.amp or ("bf16" if d.device.type == "cuda" else "none")
    if amp == "bf16" and d.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--amp bf16 is not supported by this GPU; use --amp fp16 or none")

    # model first: its pretrained cfg says which input size / mean / std the data needs
    setup.check_model_name(cfg.model)
    in_chans = None if is_fmnist(cfg.data) else 3
    probe = setup.create_model(cfg.model, in_chans=in_chans, img_size=cfg.img_size, model_kwargs=cfg.model_kwargs)
    dc = model_data_config(probe, cfg.img_size, cfg.interpolation, cfg.crop_pct)
    _note_unread_edge(probe, cfg.model, dc.input_size[-1], log)
    del probe
    train_ds, val_ds, classes = build_train_val(cfg, dc)
    num_classes = cfg.num_classes or len(classes)
    if num_classes < len(classes):
        raise UsageError(f"--num-classes {num_classes} is smaller than the {len(classes)} classes in the data")
    torch.manual_seed(cfg.seed)  # same initial weights on every rank and on resume
    model = setup.create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, img_size=cfg.img_size,
                               drop_path=cfg.drop_path, drop_rate=cfg.drop_rate, model_kwargs=cfg.model_kwargs)
    if cfg.pretrained and not cfg.resume:
        skipped = setup.load_for_finetune(model, cfg.pretrained, log=log)
        setup.note_other_classes(cfg.pretrained, classes, skipped, log)
    model.to(d.device)
    train_loader, val_loader, seeded, sampler = make_loaders(cfg, d, train_ds, val_ds)

    total_batch = cfg.batch_size * d.world
    lr = cfg.lr if cfg.lr is not None else cfg.base_lr * total_batch / 512
    optimizer = setup.build_optimizer(model, cfg, lr)
    scheduler = setup.build_scheduler(optimizer, cfg, lr / cfg.base_lr, sampler.num_batches, log=log)
    mixup = setup.build_mixup(cfg, num_classes)
    ema = setup.build_ema(model, cfg)  # a deep copy taken before compiling: the EMA stays a plain eager module
    if cfg.compile:  # in place: `model` stays the module that checkpoints, EMA updates and resume use
        setup.compile_in_place(model, cfg.compile_mode)
    wrapped = model
    if d.enabled:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device] if d.device.type == "cuda" else None)
    s = SimpleNamespace(cfg=cfg, dist=d, device=d.device, amp=amp, model=wrapped, unwrapped=model,
                        optimizer=optimizer, scheduler=scheduler, mixup=mixup, criterion=setup.build_loss(cfg, mixup),
                        ema=ema, scaler=torch.amp.GradScaler(d.device.type, enabled=amp == "fp16"),
                        global_step=0, bad_streak=0, epoch_sums=[0.0, 0, 0], best=-1.0, best_ema=-1.0,
                        classes=classes, total_batch=total_batch, batches_per_epoch=sampler.num_batches,
                        eval_transform={"img_size": dc.input_size[-1], "crop_pct": dc.crop_pct,
                                        "interpolation": dc.interpolation})
    start_epoch, start_batch = 0, 0
    if cfg.resume:
        start_epoch, start_batch = restore(s, ck.load_training_checkpoint(out / ck.LAST), log)
        if start_epoch >= cfg.epochs:
            log(f"{out} already trained its {cfg.epochs} epochs: nothing to train (to go on: --resume --epochs N "
                "--reschedule); its results follow")
        else:
            log(f"resumed from {out / ck.LAST}: epoch {start_epoch + 1}, batch {start_batch}, step {s.global_step}")
    else:
        scheduler.step_update(0)
    if d.main:
        make_output(cfg)
        config_mod.save(cfg, out / "config.yaml", as_run(cfg, s, model, lr))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"vig train: {cfg.model} ({n_params / 1e6:.2f}M params) on {cfg.data} ({len(train_ds)} train / {len(val_ds)} "
        f"val, {num_classes} classes, input {dc.input_size}), {d.world} process(es) on {d.device}, amp {amp}, "
        f"batch {total_batch}, lr {lr:.2e}, {cfg.epochs} epochs"
        f"{f', torch.compile mode {cfg.compile_mode}' if cfg.compile else ''} -> {out}")
    log(recipe_line(cfg, model))
    metrics = MetricsLog(out, cfg.tensorboard) if d.main else None

    def save_last(epoch, batches_done, epoch_sums=None):
        if d.main:  # step points first: a kill between the two repeats a few points on resume, never loses any
            metrics.write_steps()
            ck.atomic_torch_save(snapshot(s, epoch, batches_done, epoch_sums), out / ck.LAST)

    every = max(1, sampler.num_batches // 50)  # ~50 loss/lr points per epoch for the curves and TensorBoard

    def on_step(epoch, batches_done, total, loss):
        # `loss is None` (a skipped step) is agreed by every rank, so each one joins the sum at the same steps
        if loss is not None and (batches_done % every == 0 or batches_done == total):
            loss = distributed.all_sum([loss], d)[0] / d.world  # the mean over ranks, as metrics.csv's
            if d.main:
                metrics.add_step(epoch + batches_done / total, s.global_step, loss, setup.current_lr(optimizer))
        if cfg.ckpt_every_steps and s.global_step % cfg.ckpt_every_steps == 0 and batches_done < total:
            save_last(epoch, batches_done, shared_epoch_sums(s))

    row = None
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        seeded.set_epoch(epoch)
        sampler.set_epoch(epoch, start_batch, cfg.batch_size)
        if start_batch == 0:
            s.epoch_sums = [0.0, 0, 0]
        train_loss, img_s = train_one_epoch(s, train_loader, epoch, start_batch, on_step)
        start_batch = 0
        # the module, not its DDP wrapper: each forward of the wrapper broadcasts buffers (BatchNorm's, in timm's
        # CNNs), a collective that ranks with unequal numbers of validation batches would pair up wrongly
        res = evaluate(model, val_loader, d.device, amp, d, num_classes)
        ema_res = evaluate(ema.module, val_loader, d.device, amp, d, num_classes) if ema is not None else None
        row = {"epoch": epoch + 1, "train_loss": train_loss, "lr": setup.current_lr(optimizer),
               "val_loss": res["loss"], "top1": res["top1"], "top5": res["top5"],
               "ema_top1": ema_res and ema_res["top1"], "ema_top5": ema_res and ema_res["top5"],
               "skipped_steps": s.epoch_sums[2], "epoch_time_s": time.time() - t0, "train_img_per_s": img_s}
        improved = res["top1"] > s.best
        s.best = max(s.best, res["top1"])
        ema_improved = ema_res is not None and ema_res["top1"] > s.best_ema
        if ema_res is not None:
            s.best_ema = max(s.best_ema, ema_res["top1"])
        if d.main:
            meta = {"model": cfg.model, "epoch": epoch + 1, "num_classes": num_classes,
                    "classes": json.dumps(list(classes)), **s.eval_transform}  # eval / predict reuse them
            if cfg.model_kwargs:
                meta["model_kwargs"] = json.dumps(cfg.model_kwargs)
            if improved:
                ck.save_weights_safetensors(model.state_dict(), out / ck.BEST_RAW, {**meta, "top1": res["top1"]})
            if ema_improved:
                ck.save_weights_safetensors(ema.module.state_dict(), out / ck.BEST_EMA,
                                            {**meta, "top1": ema_res["top1"]})
            metrics.add(row)
            save_last(epoch + 1, 0)
            # every epoch, so a run stopped later (Ctrl-C, a kill) has its curves up to the last finished epoch
            plot_curves(metrics.rows, out / "curves.png", metrics.steps)
            tqdm_write(summary_line(row, cfg.epochs, s.best))
    distributed.barrier(d)
    if not d.main:
        return None
    metrics.close()
    curves = plot_curves(metrics.rows, out / "curves.png", metrics.steps)
    # a resume of a finished run trains no epoch: its final row is the last one metrics.csv holds
    final_row = row if row is not None else (_numbers(metrics.rows[-1]) if metrics.rows else None)
    summary = {"model": cfg.model, "data": config_mod.stored_path(cfg.data), "epochs": cfg.epochs, "final": final_row,
               "best_top1": s.best, "best_ema_top1": s.best_ema if ema is not None else None,
               "output": str(out.resolve())}
    ck.atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    if final_row is not None:  # None: a finished run resumed after its metrics.csv was removed
        print(f"done: top-1 {float(final_row['top1']):.2f}%  top-5 {float(final_row['top5']):.2f}%  (best "
              f"{s.best:.2f}%) on {len(val_ds)} val images; weights {out / ck.BEST_RAW}; metrics {out / 'metrics.csv'}")
    print(f"curves: {curves}")
    return summary


def _note_unread_edge(model, name, side, log):
    """Plain ViG's conv stem reads whole strides only: at 30 px vig_tiny sees 24 (`vig bench` refuses such sizes; a
    run may have reasons, so it is told, not stopped)."""
    from vig.models.cfgs import unread_edge
    unread, stride = unread_edge(model, side) or (0, None)
    if unread:
        log(f"note: {name}'s stem (stride {stride}) leaves {unread} px of each {side} px input unread; "
            f"--img-size {side - side % stride} or {side - side % stride + stride} reads it all")


def tqdm_write(line):
    from tqdm import tqdm
    tqdm.write(line, file=sys.stdout)


def shared_epoch_sums(s):
    """Every rank's loss sum and step count so far in the epoch, per process (the sums over ranks / world), so a
    checkpoint mid-epoch holds the whole run's share, not rank 0's alone; restore hands it to rank 0 again.
    Collective: every rank calls it at the same step."""
    loss_sum, steps = distributed.all_sum(s.epoch_sums[:2], s.dist)
    return [loss_sum / s.dist.world, steps / s.dist.world, s.epoch_sums[2]]


def snapshot(s, epoch, batches_done, epoch_sums=None):
    """Everything needed to continue exactly: epoch/batch position, weights, EMA, optimizer, scaler, RNGs."""
    state = {"format": ck.FORMAT, "epoch": epoch, "batch": batches_done, "global_step": s.global_step,
             "model": s.unwrapped.state_dict(), "optimizer": s.optimizer.state_dict(),
             "scheduler": s.scheduler.state_dict(), "scaler": s.scaler.state_dict(), "bad_streak": s.bad_streak,
             "epoch_sums": list(epoch_sums or s.epoch_sums), "best": s.best, "best_ema": s.best_ema,
             "rng": ck.rng_state(), "config": s.cfg.to_dict(), "classes": list(s.classes),
             "total_batch": s.total_batch, "batches_per_epoch": s.batches_per_epoch,
             # the size and transform validation used, resolved (config holds only what was asked: None for defaults)
             "eval_transform": s.eval_transform}
    if s.ema is not None:
        state["model_ema"] = s.ema.module.state_dict()
    return state


def restore(s, ckpt, log=print):
    check_same_run(s, ckpt)
    changes = changed_settings(ckpt.get("config") or {}, s.cfg, SCHEDULE_KEYS)
    rescheduled = s.cfg.reschedule and bool(changes)
    try:
        s.unwrapped.load_state_dict(ckpt["model"])
        s.optimizer.load_state_dict(ckpt["optimizer"])
        if not rescheduled:  # else the fresh scheduler, built from the new settings, is kept
            s.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:  # a run without fp16 saved a disabled scaler's empty state: --amp fp16 starts afresh
            s.scaler.load_state_dict(ckpt["scaler"])
        if s.ema is not None and "model_ema" in ckpt:
            s.ema.module.load_state_dict(ckpt["model_ema"])
        elif s.ema is not None:  # EMA turned on by this resume: it starts from the restored weights, as in timm
            s.ema.module.load_state_dict(ckpt["model"])
            log("--ema-decay: the run kept no EMA so far; it starts from the checkpoint's weights now")
        elif "model_ema" in ckpt:
            log("--ema-decay 0: the run's EMA weights are dropped from here on (best_ema.safetensors keeps its best)")
    except (KeyError, RuntimeError, ValueError) as e:
        raise UsageError(f"--resume: the checkpoint does not match this run's model/optimizer "
                         f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    s.global_step, s.bad_streak = ckpt["global_step"], ckpt["bad_streak"]
    s.epoch_sums, s.best, s.best_ema = resumed_epoch_sums(ckpt["epoch_sums"], s.dist), ckpt["best"], ckpt["best_ema"]
    ck.set_rng_state(ckpt["rng"])
    s.scheduler.step_update(s.global_step)
    if rescheduled:
        what = "; ".join(f"{k} {new} instead of {old}" for k, old, new in changes)
        log(f"--reschedule: the lr schedule is rebuilt ({what}); lr {setup.current_lr(s.optimizer):.2e} at step "
            f"{s.global_step}")
    return ckpt["epoch"], ckpt["batch"]


def resumed_epoch_sums(saved, d):
    """The epoch so far (per process, see shared_epoch_sums) given to rank 0 for all `world` processes now running,
    so the epoch's mean loss (summed over ranks at its end) equals the uninterrupted run's, whatever the world."""
    loss_sum, steps, skipped = saved
    return [loss_sum * d.world, steps * d.world, skipped] if d.main else [0.0, 0, skipped]


def _numbers(csv_row):
    """A metrics.csv row (strings) with its numbers as numbers and empty cells as None."""
    def value(v):
        if v in (None, ""):
            return None
        try:
            return int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            return v
    return {k: value(v) for k, v in csv_row.items()}


def recipe_line(cfg, model):
    """The regularisation a run uses, in one line: a recipe turns on mixup, RandAugment or EMA that no flag named."""
    parts = [f"recipe {cfg.recipe}: {cfg.opt} wd {cfg.weight_decay:g}",
             f"warmup {setup.warmup_epochs_used(cfg):g} ep then cosine to min-lr {cfg.min_lr:g} (x lr scale)"]
    if cfg.layer_decay:
        parts.append(f"layer decay {cfg.layer_decay:g}")
    if cfg.clip_grad:
        parts.append(f"clip {cfg.clip_grad:g}")
    if cfg.mixup or cfg.cutmix:
        parts.append(f"mixup {cfg.mixup:g} / cutmix {cfg.cutmix:g}")
    if cfg.smoothing:
        parts.append(f"smoothing {cfg.smoothing:g}")
    if cfg.auto_augment:
        parts.append(f"augment {cfg.auto_augment}")
    if cfg.reprob:
        parts.append(f"random erasing {cfg.reprob:g}")
    drop_path = built_drop_path(model)
    if drop_path:
        parts.append(f"drop path {drop_path:g}")
    parts.append((f"EMA {cfg.ema_decay:g}" + (" (warmup)" if cfg.ema_warmup else "")) if cfg.ema_decay else "no EMA")
    return ", ".join(parts)


def built_drop_path(model):
    """The deepest block's drop-path rate, as built (a variant's own default when --drop-path is not given)."""
    return max((float(m.drop_prob) for m in model.modules() if hasattr(m, "drop_prob")), default=0.0)


def as_run(cfg, s, model, lr):
    """What config.yaml's options came to on this machine: the values the recipe table names that the options
    leave to the run (peak lr from base-lr x total batch / 512, the variant's drop path, amp, the warmup run). The
    warmup and final lr are read off the built scheduler, which scaled them like the lr."""
    group = s.optimizer.param_groups[0]

    def short(x):  # 5e-7, not 5.000000000000001e-07
        return float(f"{x:.6g}")
    return {"total_batch": s.total_batch, "processes": s.dist.world, "lr": short(lr),
            "warmup_lr": short(s.scheduler.warmup_lr_init), "min_lr": short(s.scheduler.lr_min),
            "warmup_epochs": setup.warmup_epochs_used(cfg),
            **{k: list(group[k]) if isinstance(group[k], tuple) else group[k] for k in ("betas", "eps") if k in group},
            "drop_path": built_drop_path(model), "amp": s.amp, "eval_transform": dict(s.eval_transform)}
