"""What a resumed run must share with its checkpoint, each mismatch refused by the option that changed."""
from vig.errors import UsageError


def check_same_run(s, ckpt):
    """What a resumed run must share with the checkpoint, each refused by name: otherwise a state_dict error would
    name no option, or the run would go on quietly wrong (another batch skips or repeats images and moves the lr)."""
    saved, cfg, out = ckpt.get("config") or {}, s.cfg, s.cfg.output
    if saved.get("model") and saved["model"] != cfg.model:
        raise UsageError(f"--resume: {out} was trained with --model {saved['model']}, not {cfg.model}")
    if ckpt.get("classes") is not None and list(ckpt["classes"]) != list(s.classes):
        raise UsageError(f"--resume: {out} was trained on {len(ckpt['classes'])} classes "
                         f"({_names(ckpt['classes'])}), but --data {cfg.data} has {len(s.classes)} "
                         f"({_names(s.classes)}); resume with the run's own data")
    check_same_batch(s, ckpt, saved)
    check_same_epochs(s, ckpt, saved)
    from vig.models.checkpoint import compare_state_dicts, format_mismatch
    mismatch = compare_state_dicts(ckpt.get("model") or {}, s.unwrapped)
    if any(mismatch):
        raise UsageError(f"--resume: the checkpoint in {out} does not fit this run's {cfg.model} (changed "
                         f"--num-classes, --img-size or --model-kwargs?): {format_mismatch(*mismatch)}")


def check_same_batch(s, ckpt, saved):
    cfg, world = s.cfg, s.dist.world
    if "total_batch" in ckpt:  # the total decides the data order and the step count; processes may change
        same, was = ckpt["total_batch"] == cfg.batch_size * world, f"a total batch of {ckpt['total_batch']}"
    else:  # checkpoints from before the total was stored: the per-process size is all there is
        same, was = saved.get("batch_size", cfg.batch_size) == cfg.batch_size, f"--batch-size {saved.get('batch_size')}"
    if not same:
        raise UsageError(f"--resume: {cfg.output} was trained with {was}, not --batch-size {cfg.batch_size} x "
                         f"{world} process(es); keep its batch size (the images each step sees, the lr and the "
                         f"schedule depend on it)")
    if ckpt.get("batches_per_epoch", s.batches_per_epoch) != s.batches_per_epoch:
        raise UsageError(f"--resume: the training data now gives {s.batches_per_epoch} batches per epoch, the "
                         f"run had {ckpt['batches_per_epoch']}; keep the run's --data and --limit-train")


# the lr schedule's settings: the checkpoint's scheduler state would quietly overrule a new value, so one changes
# only with --reschedule, which builds the schedule afresh over the new values
SCHEDULE_KEYS = ("epochs", "base_lr", "lr", "warmup_epochs", "warmup_lr", "min_lr")
# the optimizer's: its restored state (param groups) would overrule them whatever the schedule
OPTIMIZER_KEYS = ("opt", "weight_decay", "layer_decay")


def changed_settings(saved, cfg, keys):
    """[(key, saved value, this run's value)] for the keys the saved config has and this run changed."""
    return [(k, saved[k], getattr(cfg, k)) for k in keys if k in saved and saved[k] != getattr(cfg, k)]


def check_same_epochs(s, ckpt, saved):
    cfg = s.cfg
    if ckpt["epoch"] > cfg.epochs:
        raise UsageError(f"--resume: {cfg.output} has already trained {ckpt['epoch']} epochs, more than "
                         f"--epochs {cfg.epochs}")
    planned = saved.get("epochs", cfg.epochs)
    if planned != cfg.epochs and not cfg.reschedule:
        raise UsageError(f"--resume: {cfg.output} was planned for {planned} epochs and its lr schedule ends there; "
                         f"--epochs {cfg.epochs} needs --reschedule to rebuild the schedule over {cfg.epochs} "
                         f"epochs (the lr rises again, as in timm), or drop --epochs")
    schedule = changed_settings(saved, cfg, SCHEDULE_KEYS[1:])
    if schedule and not cfg.reschedule:
        raise UsageError(f"--resume: {_flags(schedule)} changed, but the run's saved lr schedule would overrule "
                         f"them; add --reschedule to rebuild the schedule with them, or drop them")
    frozen = changed_settings(saved, cfg, OPTIMIZER_KEYS)
    if frozen:
        raise UsageError(f"--resume: {_flags(frozen)} cannot change on resume (the optimizer's saved state keeps "
                         f"them); fine-tune in a new run instead: --pretrained {cfg.output}/last.pth")


def _flags(changes):
    return ", ".join(f"--{k.replace('_', '-')} {new} (was {old})" for k, old, new in changes)


def _names(classes, shown=5):
    names = ", ".join(map(str, list(classes)[:shown]))
    return names + (", ..." if len(classes) > shown else "")
