"""UperNet on a ViG backbone: build, train (iteration based, poly schedule with warmup) and evaluate
(sliding-window inference, mIoU and pixel accuracy)."""
import itertools
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from vig.downstream import engine as E
from vig.downstream.ade import SegFolder, SegMetric
from vig.downstream.backbone import build_timm_backbone
from vig.downstream.upernet import Segmentor, slide_inference
from vig.errors import UsageError

# The paper's ADE20K recipe (appendix C, after VRWKV / Vim): UperNet 160k.
SEG_PRESET = dict(weight_decay=0.01, iters=160_000, batch_size=16, crop=512, scale=(2048, 512),
                  warmup_iters=1500, layer_decay=1.0, num_classes=150, reduce_zero_label=True)

# options that shape the model: a resumed run must have the checkpoint's (defaults as build_segmentor's)
MODEL_OPTIONS = {"backbone": None, "model_kwargs": {}, "num_classes": None, "head_channels": 512}


def preset_lr(backbone):
    """1.2e-4 for the tiny models, 6e-5 for small/base."""
    return 1.2e-4 if "tiny" in backbone or backbone.endswith("_t") else 6e-5


def build_segmentor(cfg, pretrained=None):
    body, skipped = build_timm_backbone(cfg["backbone"], pretrained, drop_path_rate=cfg.get("drop_path"),
                                        grad_checkpointing=cfg.get("grad_checkpointing", False),
                                        **cfg.get("model_kwargs", {}))
    model = Segmentor(body, cfg["num_classes"], channels=cfg.get("head_channels", 512),
                      aux_channels=cfg.get("aux_channels", 256), aux_weight=cfg.get("aux_weight", 0.4))
    return model, skipped


def _dataset(cfg, split, train):
    return SegFolder(cfg[f"{split}_images"], cfg[f"{split}_masks"], cfg["num_classes"], train=train,
                     reduce_zero_label=cfg.get("reduce_zero_label", False), scale=tuple(cfg["scale"]),
                     crop=cfg["crop"])


@torch.no_grad()
def evaluate_segmentation(model, dataset, device, crop, stride=None, amp="none", show=True):
    """Sliding-window logits on the resized image, upsampled to the label's full size, then argmax."""
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) \
        if torch.distributed.is_initialized() else (0, 1)
    model.eval()
    metric = SegMetric(dataset.num_classes)
    idx = range(rank, len(dataset), world)
    for i in tqdm(idx, desc="seg eval", disable=not (show and E.is_main()), leave=False):
        img, label = dataset[i]
        with E.autocast(device, amp):
            logits = slide_inference(model, img[None].to(device), dataset.num_classes, crop,
                                     crop * 2 // 3 if stride is None else stride)
        logits = F.interpolate(logits.float(), label.shape, mode="bilinear", align_corners=False)
        metric.update(logits.argmax(1)[0], label)
    if torch.distributed.is_initialized():
        cm = metric.cm.to(device)
        torch.distributed.all_reduce(cm)
        metric.cm = cm.cpu()
    return metric.compute()


def train_segmentation(cfg):
    rank, world, device = E.start_run(cfg)
    if cfg["batch_size"] // world < 2:  # UperNet's pooled 1x1 branch feeds BatchNorm: two values a channel at least
        raise UsageError(f"--batch-size {cfg['batch_size']} over {world} process(es) gives {cfg['batch_size'] // world} "
                         f"image(s) each; UperNet's BatchNorm needs at least 2 a process")
    last, resume, ckpt = E.check_run_dir(cfg)
    if ckpt is not None:
        E.check_same_model(ckpt["config"], cfg, MODEL_OPTIONS, resume)
    train_ds = _dataset(cfg, "train", True)
    val_ds = _dataset(cfg, "val", False) if cfg.get("val_images") else None
    model, skipped = build_segmentor(cfg, None if ckpt else cfg.get("pretrained"))
    if skipped and E.is_main():
        print(f"pretrained: loaded {cfg['pretrained']} strictly; skipped on purpose (unused by segmentation): "
              f"{', '.join(skipped)}")
    if world > 1 and device.type == "cuda":  # SyncBatchNorm is GPU-only; CPU (gloo) runs keep per-process BN
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    opt = E.build_adamw(model, "backbone.", cfg["lr"], cfg["weight_decay"], cfg.get("layer_decay", 1.0))
    scaler = E.grad_scaler(device, cfg["amp"])
    it = 0
    if ckpt is not None:
        E.load_model_state(model, ckpt["model"], resume)
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        it = ckpt["iter"]
        if world == 1 and "rng" in ckpt:  # one process: continue the exact random stream
            E.set_rng_state(ckpt["rng"])
        if E.is_main():
            print(f"resumed from {resume} at iteration {it}")
    if E.is_main():
        E.make_run_dir(cfg)
    ddp = torch.nn.parallel.DistributedDataParallel(model, [device] if device.type == "cuda" else None) \
        if world > 1 else model
    per_gpu = cfg["batch_size"] // world
    seed = cfg.get("seed", 0)
    sampler = (torch.utils.data.DistributedSampler(train_ds, world, rank, seed=seed) if world > 1
               else torch.utils.data.RandomSampler(train_ds, generator=torch.Generator().manual_seed(seed)))
    loader = torch.utils.data.DataLoader(train_ds, per_gpu, sampler=sampler, num_workers=cfg.get("workers", 2),
                                         drop_last=len(train_ds) >= per_gpu)

    def batches(start):
        """An endless stream of batches. Each epoch's order is fixed by its number, so a run resumed at
        iteration `start` continues exactly where the checkpointed run was."""
        n = len(loader)
        for ep in itertools.count(start // n):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(ep)
            else:
                sampler.generator.manual_seed(seed * 1000 + ep)
            for b, batch in enumerate(E.plain_worker_errors(loader)):
                if ep == start // n and b < start % n:
                    continue
                yield batch

    seg_fields = ["iter", "lr", "loss", "loss_seg", "loss_aux", "mIoU", "aAcc", "time"]
    log = E.MetricsLog(cfg["out_dir"], seg_fields, resume_iter=it if ckpt else None) if E.is_main() else None
    total, history, t0 = cfg["iters"], [], time.time()
    stream = batches(it)
    bar = tqdm(total=total, initial=it, desc="seg train", disable=not E.is_main())
    while it < total:
        img, label = next(stream)
        lr = E.poly_lr(cfg["lr"], it, total, warmup_iters=cfg["warmup_iters"])
        E.set_lr(opt, lr)
        ddp.train()
        with E.autocast(device, cfg["amp"]):
            loss, parts = unwrap_loss(ddp, img.to(device, non_blocking=True), label.to(device, non_blocking=True))
        E.finite_or_raise(loss, it)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        it += 1
        history.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]:.3f}", lr=f"{lr:.2e}")
        if log and (it % cfg.get("log_every", 50) == 0 or it == total):
            log.append({"iter": it, "lr": lr, "loss": history[-1], "time": round(time.time() - t0, 1),
                        **{k: float(v) for k, v in parts.items()}})
        save_now = it % cfg.get("save_every", 4000) == 0 or it == total
        if save_now and E.is_main():
            E.atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "scaler": scaler.state_dict(), "iter": it, "rng": E.rng_state(),
                                 "config": E.plain_config(cfg)}, last)
        if val_ds is not None and (it % cfg.get("eval_every", 16000) == 0 or it == total):
            m = evaluate_segmentation(model, val_ds, device, cfg["crop"], amp=cfg["amp"])
            if log:
                log.append({"iter": it, "mIoU": m["mIoU"], "aAcc": m["aAcc"], "time": round(time.time() - t0, 1)})
                bar.write(f"iter {it}: mIoU {m['mIoU']:.4f}, aAcc {m['aAcc']:.4f}")
        if log and save_now:
            log.plot("iter", ["loss", "lr", "mIoU", "aAcc"])
    bar.close()
    return {"losses": history, "iters": it, "checkpoint": last}


def unwrap_loss(ddp, img, label):
    """Loss through the (possibly DDP-wrapped) model: DDP must see the forward call itself."""
    out = ddp(img)
    logits, aux = out if isinstance(out, tuple) else (out, None)
    m = E.unwrap(ddp)
    loss = F.cross_entropy(logits.float(), label, ignore_index=255)
    parts = {"loss_seg": loss.detach()}
    if aux is not None:
        la = F.cross_entropy(aux.float(), label, ignore_index=255)
        parts["loss_aux"] = la.detach()
        loss = loss + m.aux_weight * la
    return loss, parts


def load_segmentor(path, device):
    return E.load_task_model(path, "seg", build_segmentor, device)
