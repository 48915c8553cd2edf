"""Model, optimizer, schedule, loss, mixup and EMA for a run, all from timm (none written by hand)."""
import difflib
import sys

import torch

from vig.errors import UsageError


def known_models():
    import timm
    import vig.models  # noqa: F401  registers the vig_* models with timm
    return timm.list_models()


def check_model_name(name):
    names = known_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        vig_names = [n for n in names if n.startswith("vig")]
        hint = f"did you mean {', '.join(close)}?" if close else f"ViG models: {', '.join(vig_names)}"
        raise UsageError(f"unknown model {name!r}; {hint}")


def create_model(name, num_classes=None, in_chans=None, img_size=None, drop_path=None, drop_rate=0.0,
                 model_kwargs=None):
    import timm
    check_model_name(name)
    kwargs = dict(model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if img_size:
        kwargs["img_size"] = img_size
    if drop_path is not None:
        kwargs["drop_path_rate"] = drop_path
    if drop_rate:
        kwargs["drop_rate"] = drop_rate
    try:
        return timm.create_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        if img_size and isinstance(e, TypeError) and "img_size" in str(e):
            # a model without a fixed input size (timm's CNNs) takes no img_size: --img-size sizes the data alone
            return create_model(name, num_classes, in_chans, None, drop_path, drop_rate, model_kwargs)
        raise UsageError(f"model {name} with {kwargs}: {e}") from None


def classifier_keys(model):
    """State-dict keys of the classification head (from the pretrained cfg, as timm does when it resets heads)."""
    heads = model.pretrained_cfg.get("classifier", "head")
    heads = [heads] if isinstance(heads, str) else list(heads)
    return [k for k in model.state_dict() if any(k.startswith(h + ".") for h in heads)]


def load_for_finetune(model, path, log=print):
    """Load weights (official or ours) for fine-tuning; a head of another shape is left at its fresh init."""
    from vig.models.checkpoint import (CheckpointError, checkpoint_filter_fn, compare_state_dicts, format_mismatch,
                                       guess_variant, load_checkpoint_file)
    raw = load_checkpoint_file(path)
    sd = checkpoint_filter_fn(raw, model)
    _note_resized_pos_embed(raw, sd, log)
    head = set(classifier_keys(model))
    want = model.state_dict()
    # a backbone saved without its head (num_classes=0, reset_classifier(0)) gets a fresh one, as timm gives it
    headless = [] if any(k in sd for k in head) else sorted(head)
    skipped = [k for k in sorted(head) if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    for k in skipped:
        del sd[k]
    first = model.pretrained_cfg.get("first_conv")
    key = f"{first}.weight" if first else None
    if key in sd and key in want and sd[key].shape[1] != want[key].shape[1]:
        from timm.models import adapt_input_conv  # e.g. grayscale weights onto RGB data, as timm does
        log(f"pretrained: adapting {key} from {sd[key].shape[1]} to {want[key].shape[1]} input channels")
        w, c = sd[key], want[key].shape[1]
        # timm's helper converts from RGB only; from one channel, spread it so a gray image gives the same output
        sd[key] = w.repeat(1, c, 1, 1) / c if w.shape[1] == 1 else adapt_input_conv(c, w)
    missing, unexpected, misshaped = compare_state_dicts(sd, model)
    missing = [k for k in missing if k not in skipped and k not in headless]
    if missing or unexpected or misshaped:
        name = model.pretrained_cfg.get("architecture") or type(model).__name__
        guess = guess_variant(raw, exclude=name)
        raise CheckpointError(f"--pretrained {path} does not fit {name}: "
                              + format_mismatch(missing, unexpected, misshaped)
                              + (f". This looks like a {guess} checkpoint (try --model {guess})" if guess else ""))
    model.load_state_dict(sd, strict=False)
    if skipped:
        log(f"pretrained: loaded {path}; new head for {model.num_classes} classes, skipped {', '.join(skipped)}")
    elif headless:
        log(f"pretrained: loaded {path}; it holds no head, so a new one for {model.num_classes} classes")
    else:
        log(f"pretrained: loaded {path} (all {len(sd)} tensors)")
    return skipped + headless


def _note_resized_pos_embed(raw, sd, log):
    """A checkpoint trained at another size gets its position table resampled to this run's token grid: said, since
    a 32 px run's 2 x 2 table stretched to 224 px's 14 x 14 carries little."""
    before = next((v for k, v in raw.items() if k.endswith("pos_embed")), None)
    after = sd.get("pos_embed")
    if before is not None and after is not None and before.shape != after.shape:
        grids = [f"{round(t.shape[1] ** 0.5)} x {round(t.shape[1] ** 0.5)}" for t in (before, after)]  # square only
        log(f"pretrained: position table resampled from {grids[0]} to {grids[1]} tokens (the checkpoint's training "
            "size to this run's)")


def note_other_classes(path, classes, skipped_head, log):
    """A head kept because the class count matches, though a `vig train` file names other classes: said, since
    its rows then start as the wrong classes' (a different count gets a fresh head and needs no note)."""
    from vig.models.checkpoint import saved_run_info
    theirs = saved_run_info(path).get("classes")
    if not skipped_head and theirs and list(theirs) != list(classes):
        shown = ", ".join(map(str, theirs[:5])) + (", ..." if len(theirs) > 5 else "")
        log(f"note: kept the checkpoint's {len(theirs)}-class head (same count) though it was trained on other "
            f"classes ({shown})")


def build_optimizer(model, cfg, lr):
    """AdamW (or another timm optimizer) with no weight decay on 1-D params and biases; with --layer-decay, timm's
    per-layer lr scales from the model's group_matcher.

    The paper recipe also decays what the model lists in no_weight_decay() (ViG: pos_embed), as the official code
    does (its models define no such list); the default recipe follows the timm convention and spares them."""
    from timm.optim import create_optimizer_v2, param_groups_layer_decay, param_groups_weight_decay
    skip = () if cfg.recipe == "paper" else tuple(getattr(model, "no_weight_decay", lambda: ())())
    if cfg.layer_decay is not None:
        groups = param_groups_layer_decay(model, cfg.weight_decay, no_weight_decay_list=skip,
                                          layer_decay=cfg.layer_decay)
    else:
        groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=skip)
    return create_optimizer_v2(groups, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay)


def warmup_epochs_used(cfg):
    """The warmup the schedule runs: --warmup-epochs, or a tenth of the run where that is not shorter than it."""
    return cfg.warmup_epochs if cfg.warmup_epochs < cfg.epochs else cfg.epochs / 10


def build_scheduler(optimizer, cfg, scale, updates_per_epoch, log=print):
    """Per-iteration linear warmup then cosine to min_lr (timm scheduler), the two together `epochs` long: the
    cosine reaches min_lr at the last update. timm's warmup_prefix puts the warmup before a cosine of num_epochs,
    so the cosine gets epochs - warmup. A warmup as long as the run would leave no cosine (and the lr would never
    reach base_lr), so it is cut to a tenth of the run, with a warning."""
    from timm.scheduler import create_scheduler_v2
    warmup = warmup_epochs_used(cfg)
    if warmup != cfg.warmup_epochs:
        log(f"warning: --warmup-epochs {cfg.warmup_epochs:g} is not shorter than --epochs {cfg.epochs}; "
            f"warming up for {warmup:g} epochs instead")
    sched, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=cfg.epochs - warmup, warmup_epochs=warmup,
                                   warmup_lr=cfg.warmup_lr * scale, min_lr=cfg.min_lr * scale, warmup_prefix=True,
                                   step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return sched


def current_lr(optimizer):
    """The lr that logs and progress bars show: the largest group's (the head's), since with layer decay group 0 is
    the stem's, scaled by layer_decay ** depth."""
    return max(g["lr"] for g in optimizer.param_groups)


def build_mixup(cfg, num_classes):
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    from timm.data import Mixup
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=1.0, switch_prob=0.5, mode="batch",
                 label_smoothing=cfg.smoothing, num_classes=num_classes)


def build_loss(cfg, mixup):
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    if mixup is not None:
        return SoftTargetCrossEntropy()  # smoothing is applied inside Mixup's targets
    if cfg.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    return torch.nn.CrossEntropyLoss()


def build_ema(model, cfg):
    """ema_warmup: timm's decay ramp, 1 - (1 + step)^(-2/3) up to ema_decay (0.9 at step 30, 0.99 at 1,000,
    0.9998 from ~360,000). At a fixed 0.9998 the EMA averages over ~5,000 steps, so a fine-tune of a few hundred
    steps kept an EMA of mostly the starting weights and a random head: best_ema and `vig eval` of last.pth (EMA
    by default) scored near chance."""
    if not cfg.ema_decay:
        return None
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup)


# Tests swap in a cheap backend (inductor compiles each graph for ~1 min on a 2-core CPU); users get inductor.
COMPILE_BACKEND = "inductor"


def compile_in_place(model, mode="default"):
    """torch.compile the module IN PLACE (nn.Module.compile), for the forward/backward of training and evaluation.

    In place rather than `torch.compile(model)`: no OptimizedModule wrapper, so state_dict keys keep no `_orig_mod.`
    prefix and checkpoints, EMA and resume see the very same module compiled or not. Under DDP this runs BEFORE the
    wrapping (DDP(compiled inner module)), the order the PyTorch docs ("Where to apply torch.compile?") recommend:
    Dynamo does not trace DDP's wrapper well, while DDP's gradient hooks fire as the compiled backward produces grads."""
    model.compile(mode=mode or "default", backend=COMPILE_BACKEND)
    return model


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr)
