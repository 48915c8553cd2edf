"""Mask R-CNN (torchvision) on a ViG backbone + FPN: build, train (epoch based, mmdet 1x schedule) and evaluate
(COCOeval box and mask AP). The `cfg` dict holds everything needed to rebuild the model from a checkpoint."""
import time

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from tqdm import tqdm

from vig.downstream import engine as E
from vig.downstream.backbone import build_backbone_with_fpn
from vig.downstream.coco import IMAGENET_MEAN, IMAGENET_STD, CocoInstances, collate
from vig.downstream.coco_eval import coco_evaluate, to_coco_results
from vig.errors import UsageError

# The paper's COCO recipe (appendix C, after VRWKV / ViT-Adapter): Mask R-CNN 1x.
DET_PRESET = dict(lr=1e-4, weight_decay=0.05, epochs=12, batch_size=16, min_size=800, max_size=1333,
                  milestones=(8, 11), warmup_iters=500, layer_decay=1.0)

# options that shape the model: a resumed run must have the checkpoint's (defaults as build_detector's)
MODEL_OPTIONS = {"backbone": None, "model_kwargs": {}, "fpn_channels": 256, "head_width": None}


def build_detector(cfg, pretrained=None):
    """Returns (MaskRCNN, skipped_checkpoint_keys). torchvision's default heads unless cfg['head_width'] is set
    (a narrow box/mask head, for tests and smoke runs on CPU)."""
    out_ch = cfg.get("fpn_channels", 256)
    backbone, skipped = build_backbone_with_fpn(
        cfg["backbone"], pretrained, out_channels=out_ch, drop_path_rate=cfg.get("drop_path"),
        grad_checkpointing=cfg.get("grad_checkpointing", False), **cfg.get("model_kwargs", {}))
    num_classes = len(cfg["categories"]) + 1
    extra = {}
    if cfg.get("head_width"):
        w = cfg["head_width"]
        extra = dict(box_head=TwoMLPHead(out_ch * 7 * 7, w), box_predictor=FastRCNNPredictor(w, num_classes),
                     mask_head=MaskRCNNHeads(out_ch, (w, w), 1), mask_predictor=MaskRCNNPredictor(w, w, num_classes),
                     num_classes=None)
    model = MaskRCNN(backbone, num_classes=extra.pop("num_classes", num_classes), min_size=cfg["min_size"],
                     max_size=cfg["max_size"], image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                     box_batch_size_per_image=cfg.get("roi_batch", 512), **extra)
    return model, skipped


class AspectRatioBatchSampler(torch.utils.data.Sampler):
    """Batches of images that are all landscape or all portrait, so padding to the batch's largest image wastes
    little (torchvision's detection references do the same). Leftovers of each epoch are mixed into full batches,
    so every epoch has exactly len(sampler) // batch_size batches."""

    def __init__(self, sampler, groups, batch_size):
        self.sampler, self.groups, self.batch_size = sampler, groups, batch_size
        # batches at the start of the next epoch already trained on (a resume inside an epoch): formed, so the rest
        # are the same batches, but never loaded (loading them decoded every image and drew the flips' random
        # numbers, so the resumed run left the uninterrupted one's random stream)
        self.skip = 0

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for n, batch in enumerate(self._batches()):
            if n >= skip:
                yield batch

    def _batches(self):
        buckets, n = {}, 0
        for idx in self.sampler:
            b = buckets.setdefault(self.groups[idx], [])
            b.append(idx)
            if len(b) == self.batch_size:
                yield list(b)
                b.clear()
                n += 1
        rest = [i for b in buckets.values() for i in b]
        while n < len(self):
            yield rest[:self.batch_size]
            rest, n = rest[self.batch_size:], n + 1

    def __len__(self):
        return len(self.sampler) // self.batch_size


def _loader(ds, batch, world, rank, train, workers, seed=0):
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(ds, world, rank, shuffle=train, seed=seed)
    elif train:
        sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = torch.utils.data.SequentialSampler(ds)
    common = dict(num_workers=workers, collate_fn=collate, persistent_workers=workers > 0)
    if train:
        batches = AspectRatioBatchSampler(sampler, ds.aspect_groups(), batch)
        return torch.utils.data.DataLoader(ds, batch_sampler=batches, **common)
    return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, **common)


@torch.no_grad()
def evaluate_detection(model, dataset, device, amp="none", workers=0, show=True):
    """Box and mask AP of `model` on `dataset` (a CocoInstances with train=False); every rank runs a shard."""
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) \
        if torch.distributed.is_initialized() else (0, 1)
    model.eval()
    results = []
    loader = _loader(dataset, 1, world, rank, False, workers)
    batches = tqdm(E.plain_worker_errors(loader), total=len(loader), desc="det eval",
                   disable=not (show and E.is_main()), leave=False)
    for images, targets in batches:
        with E.autocast(device, amp):
            outputs = model([im.to(device) for im in images])
        results += to_coco_results(outputs, [t["image_id"] for t in targets], dataset.label_to_cat)
    results = [r for part in E.all_gather_objects(results) for r in part]
    if not E.is_main():
        return None
    metrics = coco_evaluate(dataset.gt, results, image_ids=dataset.ids)
    return {f"{t}_{k}": v for t, m in metrics.items() for k, v in m.items()}


def train_detection(cfg):
    """cfg: train_images, train_ann, [val_images, val_ann], backbone, out_dir, plus DET_PRESET keys and
    amp, device, workers, seed, pretrained, resume, max_iters, log_every, clip_grad, eval_every."""
    rank, world, device = E.start_run(cfg)
    last, resume, ckpt = E.check_run_dir(cfg)
    train_ds = CocoInstances(cfg["train_images"], cfg["train_ann"], train=True)
    val_ds = (CocoInstances(cfg["val_images"], cfg["val_ann"], categories=train_ds.categories)
              if cfg.get("val_ann") else None)
    cfg["categories"] = train_ds.categories
    if ckpt is not None:
        from vig.downstream.coco import check_categories
        check_categories(ckpt["config"]["categories"], train_ds.categories, cfg["train_ann"])
        E.check_same_model(ckpt["config"], cfg, MODEL_OPTIONS, resume)
    model, skipped = build_detector(cfg, None if ckpt else cfg.get("pretrained"))
    if skipped and E.is_main():
        print(f"pretrained: loaded {cfg['pretrained']} strictly; skipped on purpose (unused by detection): "
              f"{', '.join(skipped)}")
    model.to(device)
    opt = E.build_adamw(model, "backbone.body.", cfg["lr"], cfg["weight_decay"], cfg.get("layer_decay", 1.0))
    scaler = E.grad_scaler(device, cfg["amp"])
    start_epoch, it, skip = 0, 0, 0
    # one process: continue the exact random stream, from the epoch's first batch (below)
    resume_rng = ckpt.get("rng") if ckpt is not None and world == 1 else None
    if ckpt is not None:
        E.load_model_state(model, ckpt["model"], resume)
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, it, skip = ckpt["epoch"], ckpt["iter"], ckpt.get("epoch_iter", 0)
        if E.is_main():
            print(f"resumed from {resume} at epoch {start_epoch}, iteration {it}")
    ddp = torch.nn.parallel.DistributedDataParallel(model, [device] if device.type == "cuda" else None) \
        if world > 1 else model
    loader = _loader(train_ds, cfg["batch_size"] // world, world, rank, True, cfg.get("workers", 2),
                     cfg.get("seed", 0))
    if len(loader) == 0:
        raise UsageError(f"{len(train_ds)} training images is fewer than one batch of {cfg['batch_size'] // world}")
    if E.is_main():
        E.make_run_dir(cfg)
    det_fields = ["epoch", "iter", "lr", "loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                  "loss_rpn_box_reg", "bbox_AP", "segm_AP", "time"]
    log = E.MetricsLog(cfg["out_dir"], det_fields, resume_iter=it if ckpt else None) if E.is_main() else None
    max_iters = cfg.get("max_iters") or cfg["epochs"] * len(loader)
    history, t0 = [], time.time()

    def save(epoch, in_epoch):
        """last.pth at `in_epoch` batches into `epoch`; an epoch cut short (--max-iters, --save-every) is not done:
        a resume re-enters it and skips the batches already trained on."""
        if not E.is_main():
            return
        done = epoch + 1 if in_epoch >= len(loader) else epoch
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                 "epoch": done, "epoch_iter": 0 if done == epoch + 1 else in_epoch, "iter": it,
                 "rng": E.rng_state(), "config": E.plain_config(cfg)}
        E.atomic_torch_save(state, last)

    for epoch in range(start_epoch, cfg["epochs"]):
        if it >= max_iters:
            break
        sampler = loader.batch_sampler.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        else:  # the epoch alone fixes the order, so a resumed run sees the same batches
            sampler.generator.manual_seed(cfg.get("seed", 0) * 1000 + epoch)
        ddp.train()
        loader.batch_sampler.skip = skip  # resuming inside this epoch: the same (epoch-seeded) order
        batches = iter(loader)  # draws the loader's base seed, as the uninterrupted run did before its checkpoint
        if resume_rng is not None:
            E.set_rng_state(resume_rng)
            resume_rng = None
        bar = tqdm(E.plain_worker_errors(batches), total=len(loader), initial=skip,
                   desc=f"det epoch {epoch + 1}/{cfg['epochs']}", disable=not E.is_main(), leave=False)
        epoch_start_it = it
        for images, targets in bar:
            lr = E.step_lr(cfg["lr"], it, len(loader), cfg["milestones"], warmup_iters=cfg["warmup_iters"])
            E.set_lr(opt, lr)
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with E.autocast(device, cfg["amp"]):
                losses = ddp(images, targets)
            loss = sum(losses.values())
            E.finite_or_raise(loss, it)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.get("clip_grad"):
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
            scaler.step(opt)
            scaler.update()
            it += 1
            history.append(float(loss.detach()))
            bar.set_postfix(loss=f"{history[-1]:.3f}", lr=f"{lr:.2e}")
            if log and (it % cfg.get("log_every", 20) == 0 or it == max_iters):
                parts = {k: float(v.detach()) for k, v in losses.items()}
                log.append({"epoch": epoch + 1, "iter": it, "lr": lr, "loss": history[-1],
                            "time": round(time.time() - t0, 1), **parts})
            if it >= max_iters:  # before the next batch is fetched: its flips would draw from the saved stream
                break
            in_epoch = skip + it - epoch_start_it
            if cfg.get("save_every") and it % cfg["save_every"] == 0 and in_epoch < len(loader):
                save(epoch, in_epoch)  # inside the epoch: a crash loses at most save_every iterations
        save(epoch, skip + it - epoch_start_it)
        skip = 0
        metrics = None
        if val_ds is not None and ((epoch + 1) % cfg.get("eval_every", 1) == 0 or epoch + 1 == cfg["epochs"]):
            metrics = evaluate_detection(model, val_ds, device, cfg["amp"], cfg.get("workers", 2))
        if log:
            if metrics:
                log.append({"epoch": epoch + 1, "iter": it, "bbox_AP": metrics["bbox_AP"],
                            "segm_AP": metrics.get("segm_AP", ""), "time": round(time.time() - t0, 1)})
                print(f"epoch {epoch + 1}: box AP {metrics['bbox_AP']:.4f}, mask AP {metrics.get('segm_AP', 0):.4f}")
            log.plot("iter", ["loss", "lr", "bbox_AP", "segm_AP"])
    return {"losses": history, "iters": it, "checkpoint": last}


def load_detector(path, device):
    return E.load_task_model(path, "det", build_detector, device)
