"""One training epoch and one evaluation pass."""
import math
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from vig.data.sampling import mix_seed, seed_all
from vig.errors import UsageError
from vig.train import distributed
from vig.train.setup import current_lr


class TrainingAborted(UsageError):
    """Printed as one line by the CLI: the run cannot go on (e.g. the loss keeps being NaN)."""


def autocast(device, amp):
    if amp in (None, "none"):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def train_one_epoch(state, loader, epoch, start_batch, on_step=None):
    """Runs the epoch's remaining batches. `state` holds model/optimizer/... and the running counters; its
    `epoch_sums` carry over from a mid-epoch checkpoint so a resumed epoch reports the same mean loss."""
    s, cfg, d = state, state.cfg, state.dist
    s.model.train()
    total = len(loader) + start_batch
    bar = None
    if d.main and cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=start_batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
    tick, seen_t, seen_n = time.perf_counter(), 0.0, 0
    for i, (x, y) in enumerate(loader, start=start_batch):
        t0 = time.perf_counter()
        x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
        seed_all(mix_seed(cfg.seed, 1, d.rank, s.global_step))  # mixup / drop path: a function of the step only
        if s.mixup is not None:
            x, y = s.mixup(x, y)
        with autocast(s.device, s.amp):
            loss = s.criterion(s.model(x), y)
        if s.global_step in cfg.inject_nan_steps:
            loss = loss * float("nan")
        finite = distributed.all_sum([float(torch.isfinite(loss).item())], d)[0] == d.world
        if finite:
            s.optimizer.zero_grad(set_to_none=True)
            s.scaler.scale(loss).backward()
            if cfg.clip_grad:
                from timm.utils import dispatch_clip_grad
                s.scaler.unscale_(s.optimizer)
                dispatch_clip_grad(s.model.parameters(), cfg.clip_grad, mode="norm")
            s.scaler.step(s.optimizer)
            s.scaler.update()
            if s.ema is not None:
                s.ema.update(s.unwrapped, step=s.global_step)
            s.bad_streak = 0
            s.epoch_sums[0] += loss.item()
            s.epoch_sums[1] += 1
        else:
            s.bad_streak += 1
            s.epoch_sums[2] += 1
            print(f"warning: step {s.global_step}: non-finite loss ({loss.item()}), step skipped "
                  f"({s.bad_streak} in a row)", file=sys.stderr) if d.main else None
            if s.bad_streak >= cfg.max_bad_steps:
                raise TrainingAborted(
                    f"training aborted: the loss was NaN/Inf for {s.bad_streak} steps in a row (up to step "
                    f"{s.global_step}, epoch {epoch + 1}); lower --lr, try --amp bf16 or none instead of fp16, "
                    f"or check the data. The last good checkpoint is in {cfg.output}")
        s.global_step += 1
        s.scheduler.step_update(num_updates=s.global_step)
        seen_t += time.perf_counter() - t0
        seen_n += x.shape[0] * d.world
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{current_lr(s.optimizer):.2e}",
                            img_s=f"{seen_n / max(seen_t, 1e-9):.0f}", refresh=False)
        if on_step is not None:
            on_step(epoch, i + 1, total, loss.item() if finite else None)
    if bar is not None:
        bar.close()
    sums = distributed.all_sum(s.epoch_sums[:2], d)  # mean over ranks of the per-rank mean losses
    mean_loss = sums[0] / sums[1] if sums[1] else math.nan
    return mean_loss, seen_n / max(time.perf_counter() - tick, 1e-9)


@torch.no_grad()
def evaluate(model, loader, device, amp, d, num_classes):
    """Cross-entropy, top-1 and top-5 (%) over the whole split (summed over ranks' disjoint shards)."""
    model.eval()
    loss_sum, c1, c5, n = 0.0, 0.0, 0.0, 0.0
    k = min(5, num_classes)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(k, dim=1).indices
        c1 += (top[:, 0] == y).sum().item()
        c5 += (top == y[:, None]).any(dim=1).sum().item()
        n += y.numel()
    loss_sum, c1, c5, n = distributed.all_sum([loss_sum, c1, c5, n], d)
    return {"loss": loss_sum / n, "top1": 100 * c1 / n, "top5": 100 * c5 / n, "n": int(n)}
