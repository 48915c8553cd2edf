"""Loading, filtering and saving ViG checkpoints (official `.pth` and `.safetensors`).

`checkpoint_filter_fn` is what timm's `build_model_with_cfg(pretrained_filter_fn=...)` calls, so
`timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))` loads every official format.
Everything else here is used by `vig convert` / `vig predict` and by training code that resumes from weights.
"""
import functools
import json
import math
import os
import pickle
import re
import sys
import zipfile

import torch

from vig.atomic import atomic_write_path
from vig.errors import UsageError


class CheckpointError(UsageError):
    """A checkpoint that cannot be read or does not fit the model."""


# Wrapper keys, in order of preference. EMA wins over raw weights when both are present: that is what timm's own
# file loader does (use_ema=True) and what the official `--pretrained` route loads into the EMA model. The official
# `best_acc_ema_ckpt.pth` stores its EMA weights under 'model' anyway, so single-key files are unambiguous.
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
RAW_WEIGHTS_HELP = "load a last.pth's raw weights, not its EMA ones (which timm, and these commands, take by default)"

# Wrappers added by DDP and torch.compile; they may be nested in either order.
_PREFIXES = ("module.", "_orig_mod.")

# Legacy ViG-H key names, renamed as the official HierViG._load_from_state_dict does.
_VIG_H_RENAMES = (
    (re.compile(r"^patch_embed\.proj\."), "patch_embed.0."),
    (re.compile(r"^patch_embed\.norm\."), "patch_embed.2."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.ln_1\."), r"\1.norm."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.self_attention\."), r"\1.op."),
    (re.compile(r"^norm\."), "classifier.norm."),
    (re.compile(r"^head\."), "classifier.head."),
)


def unwrap_state_dict(checkpoint, raw_weights=False):
    """Return the state_dict inside `checkpoint` (a wrapper dict or already a bare state_dict). A file with EMA and
    raw weights gives the EMA ones, as timm does, unless raw_weights."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint is a {type(checkpoint).__name__}, expected a dict of tensors")
    keys = sorted(WRAPPER_KEYS, key=lambda k: "ema" in k) if raw_weights else WRAPPER_KEYS
    for key in keys:
        inner = checkpoint.get(key)
        if isinstance(inner, dict):
            if raw_weights and "ema" in key:
                raise CheckpointError(f"the checkpoint holds EMA weights ('{key}') only; drop --raw-weights")
            return unwrap_state_dict(inner) if not _has_tensors(inner) and inner else inner
    return checkpoint


def _has_tensors(d):
    return any(isinstance(v, torch.Tensor) for v in d.values())


def _strip_prefixes(key):
    while key.startswith(_PREFIXES):
        for p in _PREFIXES:
            if key.startswith(p):
                key = key[len(p):]
    return key


def is_vig_h(model):
    """ViG-H is the only model here with `layers.*` stages and a `classifier.head`; decide from its own keys."""
    keys = model.state_dict().keys()
    return "classifier.head.weight" in keys and any(k.startswith("layers.") for k in keys)


def rename_vig_h_legacy(state_dict):
    out = {}
    for k, v in state_dict.items():
        for pattern, repl in _VIG_H_RENAMES:
            k, n = pattern.subn(repl, k)
            if n:
                break
        out[k] = v
    return out


def _model_grid(model, num_tokens):
    """The model's token grid (h, w); non-square grids come from its patch_embed, square ones from N alone."""
    for owner in (getattr(model, "patch_embed", None), model):
        grid = getattr(owner, "grid_size", None)
        if grid is not None and int(grid[0]) * int(grid[1]) == num_tokens:
            return int(grid[0]), int(grid[1])
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise CheckpointError(f"cannot tell the model's token grid for pos_embed with {num_tokens} tokens")
    return side, side


def resample_pos_embed(posemb, model):
    """Resize a (1, N, C) pos_embed to the model's grid; other mismatches are left for the shape report.

    Uses the model's own runtime rule (bicubic, align_corners=False, no antialias), so a 224 checkpoint loaded at
    another img_size computes exactly what the 224 model computes on inputs of that size."""
    from vig.layers.embed import resample_pos_embed as resample

    target = getattr(model, "pos_embed", None)
    if not isinstance(target, torch.Tensor) or posemb.ndim != 3 or target.ndim != 3:
        return posemb
    if posemb.shape == target.shape or posemb.shape[-1] != target.shape[-1]:
        return posemb
    old_side = math.isqrt(posemb.shape[1])
    if old_side * old_side != posemb.shape[1]:
        raise CheckpointError(f"checkpoint pos_embed has {posemb.shape[1]} tokens, not a square grid; cannot resample")
    return resample(posemb, _model_grid(model, target.shape[1]), (old_side, old_side))


def checkpoint_filter_fn(state_dict, model, strict=True):
    """Turn any official/timm checkpoint layout into `model`'s key names.

    Accepts {'model': sd}, {'model_ema': sd}, {'state_dict': sd} or a bare sd (timm may or may not have unwrapped it),
    strips DDP/compile prefixes, renames legacy ViG-H keys (ViG-H models only) and resamples `pos_embed` to the
    model's grid. Nothing is dropped. Mis-shaped tensors (other than the first conv and classifier, which timm
    adapts for in_chans/num_classes) raise a CheckpointError listing every mismatch and the variant the checkpoint
    looks like. Missing/unexpected keys alone are left to the load that follows, unless (strict) the checkpoint is
    exactly another registered variant (ViG-H-T's into ViG-H-S: the same widths, fewer blocks), named then.
    """
    sd = unwrap_state_dict(state_dict)
    sd = {_strip_prefixes(k): v for k, v in sd.items()}
    if model is not None and is_vig_h(model):
        sd = rename_vig_h_legacy(sd)
    if model is not None and "pos_embed" in sd:
        sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], model)
    if model is not None:  # model order first (safetensors files come back sorted), leftovers after
        order = {k: i for i, k in enumerate(model.state_dict())}
        sd = dict(sorted(sd.items(), key=lambda kv: order.get(kv[0], len(order))))
        _refuse_wrong_shapes(state_dict, sd, model, strict)
    return sd


def _refuse_wrong_shapes(raw, sd, model, strict=True):
    """Mis-shaped tensors fail any load (strict or not), so report them here with the full picture.

    The first conv and the classifier are exempt: timm adapts them afterwards for in_chans / num_classes."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    exempt = set()
    for name in (cfg.get("first_conv"), cfg.get("classifier")):
        for n in ((name,) if isinstance(name, str) else (name or ())):
            exempt.update((n + ".weight", n + ".bias"))
    missing, unexpected, misshaped = compare_state_dicts(sd, model)
    # A checkpoint of another family (ViG-H into plain ViG) shares almost no key names, so no shape is compared
    # and torch's strict load would print every key; most keys missing is reason enough to stop here.
    other_family = len([k for k in missing if k not in exempt]) > len(model.state_dict()) // 2
    name = cfg.get("architecture") or type(model).__name__
    msg = f"checkpoint does not fit {name}: " + format_mismatch(missing, unexpected, misshaped)
    msg += input_channels_hint(misshaped, model)
    if other_family or any(k not in exempt for k, _, _ in misshaped):
        guess = guess_variant(raw, exclude=name)
        raise CheckpointError(msg + (f". This looks like a {guess} checkpoint" if guess else ""))
    if strict and ([k for k in missing if k not in exempt] or unexpected):
        guess = guess_variant(raw, exclude=name)
        if guess:  # else torch's strict load reports the keys, as for any other partial checkpoint
            raise CheckpointError(f"{msg}. This looks like a {guess} checkpoint: build that model, or load what "
                                  f"fits with vig.models.checkpoint.load_pretrained(model, path, strict=False)")


_NOTED_EMA = set()  # paths already noted: one note per file and process, however often a caller reads it


def _say_which_weights(checkpoint, path):
    """A file with both EMA and raw weights (`vig train`'s last.pth, timm's checkpoints) loads the EMA ones, as timm
    does; early in a run they can score far below the raw weights, so the choice is said, not made silently."""
    present = [k for k in WRAPPER_KEYS if isinstance(checkpoint, dict) and isinstance(checkpoint.get(k), dict)
               and checkpoint[k]]
    if len(present) > 1 and "ema" in present[0] and "ema" not in present[-1] and path not in _NOTED_EMA:
        _NOTED_EMA.add(path)
        print(f"note: {path} holds EMA weights ('{present[0]}') and raw weights ('{present[-1]}'); loading the EMA "
              f"ones, as timm does (--raw-weights for the others). `vig train` also writes best.safetensors (raw) and "
              f"best_ema.safetensors (EMA)", file=sys.stderr)


def check_checkpoint_path(path):
    """Refuse a path that names no readable checkpoint (missing, a folder, empty), saying which."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")


def load_checkpoint_file(path, raw_weights=False):
    """Read a `.pth`/`.pt` (weights_only pickle) or `.safetensors` file and return its state_dict of tensors
    (raw_weights: a last.pth's raw weights rather than its EMA ones)."""
    path = os.fspath(path)
    check_checkpoint_path(path)
    if path.endswith(".safetensors"):
        if raw_weights:  # one set of weights: the flag would be ignored without a word
            raise CheckpointError(f"--raw-weights picks a last.pth's raw weights over its EMA ones; {path} holds one "
                                  f"set (a run's best.safetensors: raw, best_ema.safetensors: EMA); drop the flag")
        checkpoint = _load_safetensors(path)
    else:
        checkpoint = _load_pickle(path)
    if not raw_weights:
        _say_which_weights(checkpoint, path)
    sd = unwrap_state_dict(checkpoint, raw_weights)
    not_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not sd or len(not_tensors) == len(sd):
        top = ", ".join(map(str, list(checkpoint)[:8])) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"no tensors found in {path} (top-level keys: {top or 'none'}); "
                              f"expected a state_dict, or one under {' / '.join(WRAPPER_KEYS)}")
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict holds non-tensor entries: {', '.join(map(str, not_tensors[:8]))}")
    return sd


def _load_safetensors(path):
    from safetensors.torch import load_file
    try:
        return load_file(path, device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError (not importable in every version)
        raise CheckpointError(f"corrupt or truncated safetensors file {path}: {e}") from None


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _load_pickle(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL_RE.search(str(e))
        if found:
            raise CheckpointError(
                f"{path} needs code execution to unpickle (it references {found.group(1)}); refused for safety. "
                "Only plain tensor state_dicts are accepted (torch.load weights_only=True)") from None
        raise CheckpointError(f"corrupt checkpoint {path}: not a valid PyTorch file") from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"corrupt or truncated checkpoint {path}: {str(e).splitlines()[0] or type(e).__name__}") \
            from None
    except (IndexError, KeyError, TypeError, AttributeError) as e:
        # text that is no pickle (a metrics.csv, a notes file) runs the weights_only unpickler's stack machine on
        # arbitrary bytes, which stops with whatever it hits first: IndexError for a CSV, KeyError for plain text
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (unreadable as one: {type(e).__name__})") \
            from None


def compare_state_dicts(state_dict, model):
    """(missing, unexpected, mis-shaped) keys of `state_dict` against `model`; mis-shaped as (key, want, got)."""
    want = model.state_dict()
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    misshaped = [(k, tuple(want[k].shape), tuple(v.shape)) for k, v in state_dict.items()
                 if k in want and tuple(v.shape) != tuple(want[k].shape)]
    return missing, unexpected, misshaped


def _list(keys, limit=12):
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def format_mismatch(missing, unexpected, misshaped):
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_list(unexpected)}")
    if misshaped:
        rows = [f"{k} (model {list(w)}, checkpoint {list(g)})" for k, w, g in misshaped]
        parts.append(f"mis-shaped {len(misshaped)} key(s): {_list(rows)}")
    return "; ".join(parts)


def input_channels_hint(misshaped, model):
    """'. The checkpoint takes 1-channel input, the model 3 (in_chans=3)' when the first conv differs in its input
    channels only: the shape list alone does not say that a grayscale checkpoint met an RGB model; '' otherwise."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    firsts = {f"{n}.weight" for n in ((first,) if isinstance(first, str) else (first or ()))}
    for key, want, got in misshaped:
        only_channels_differ = len(want) == len(got) == 4 and want[:1] + want[2:] == got[:1] + got[2:]
        if key in firsts and only_channels_differ:
            return f". The checkpoint takes {got[1]}-channel input, the model {want[1]} (in_chans={want[1]})"
    return ""


@functools.lru_cache(maxsize=None)
def _variant_shapes(name):
    """(is ViG-H, {key: shape}) of a registered model, built on the meta device (no memory, no init)."""
    from vig.models.cfgs import create_for_shapes
    model = create_for_shapes(name)
    return is_vig_h(model), {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_variant(raw_state_dict, exclude=None):
    """Name of the registered vig model whose keys and shapes the checkpoint matches, or None.

    pos_embed length and classifier rows are ignored: they change with img_size and num_classes."""
    import timm
    plain = {_strip_prefixes(k): v for k, v in unwrap_state_dict(raw_state_dict).items()}
    hier = rename_vig_h_legacy(plain)
    for name in timm.list_models("vig*"):
        if name == exclude:
            continue
        vig_h, shapes = _variant_shapes(name)
        sd = hier if vig_h else plain
        if set(sd) != set(shapes):
            continue
        if all(tuple(v.shape) == shapes[k] or k == "pos_embed" or k.endswith("head.weight") or k.endswith("head.bias")
               for k, v in sd.items()):
            return name
    return None


def load_pretrained(model, path, strict=True, model_name=None, raw=None):
    """Load a checkpoint file into `model` through `checkpoint_filter_fn`; a mismatch raises a CheckpointError.

    Mis-shaped keys always raise; with strict=False missing/unexpected keys are tolerated and returned.
    raw: the file's load_checkpoint_file result when the caller has read it already (no second read)."""
    raw = load_checkpoint_file(path) if raw is None else raw
    sd = checkpoint_filter_fn(raw, model, strict=strict)
    missing, unexpected, misshaped = compare_state_dicts(sd, model)
    if misshaped or (strict and (missing or unexpected)):
        msg = f"checkpoint {os.path.basename(os.fspath(path))} does not fit {model_name or type(model).__name__}: "
        msg += format_mismatch(missing, unexpected, misshaped) + input_channels_hint(misshaped, model)
        guess = guess_variant(raw, exclude=model_name)
        heads = [g for k, _, g in misshaped if k.endswith("head.weight")]
        if heads and all(k.endswith(("head.weight", "head.bias")) for k, _, _ in misshaped):
            msg += f". The checkpoint's head has {heads[0][0]} classes (build the model with num_classes={heads[0][0]})"
        elif guess:
            msg += f". This looks like a {guess} checkpoint: build that model (--model, or --backbone in det / seg)"
        raise CheckpointError(msg)
    model.load_state_dict(sd, strict=strict)
    return missing, unexpected


def save_safetensors_atomic(state_dict, path, metadata=None):
    """Write `state_dict` to `path` as safetensors via a temp file in the same folder, so a failure leaves nothing."""
    from safetensors.torch import save_file
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CheckpointError(f"output folder does not exist: {folder}")
    tensors, seen = {}, set()
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if v.data_ptr() in seen and v.numel():  # safetensors refuses shared storage (tied weights)
            v = v.clone()
        seen.add(v.data_ptr())
        tensors[k] = v
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    atomic_write_path(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def head_rows(sd):
    """Classes in a state_dict's head (plain ViG: head.weight; ViG-H: classifier.head.weight); None if absent."""
    for key in ("head.weight", "classifier.head.weight", "head.fc.weight", "fc.weight"):
        if key in sd and sd[key].ndim == 2:
            return sd[key].shape[0]
    return None


def checkpoint_build_kwargs(raw, name):
    """timm.create_model arguments that a fine-tuned checkpoint needs: its head size (not ImageNet's, 0 for a backbone
    saved without its classifier) and its input channels (e.g. vig_fmnist fine-tuned on RGB folders); {} when the
    file matches the model's defaults. raw: the file as load_checkpoint_file returns it (the caller passes it on to
    load_pretrained)."""
    import timm
    sd = checkpoint_filter_fn(raw, None)
    first, head = ((timm.get_pretrained_cfg_value(name, key) for key in ("first_conv", "classifier"))
                   if timm.is_model(name) else (None, None))
    stem = sd.get(f"{first}.weight") if isinstance(first, str) else None
    out = {}
    rows = head_rows(sd)
    if rows is None and stem is not None and isinstance(head, str) and not any(k.startswith(f"{head}.") for k in sd):
        rows = 0  # the model without any head tensor; a head missing one tensor is a damaged file the load names
    if rows is not None:
        out["num_classes"] = rows
    if stem is not None and stem.ndim == 4:
        out["in_chans"] = stem.shape[1]
    return out


def require_head(build_kwargs, path, use):
    """Refuse a backbone saved with num_classes=0 (checkpoint_build_kwargs) where a classifier is needed for `use`."""
    if build_kwargs.get("num_classes") == 0:
        raise CheckpointError(f"{path} has no classifier head (a backbone saved with num_classes=0), so {use}; "
                              "fine-tune one with `vig train --pretrained FILE`")


def saved_run_info(checkpoint):
    """Model name and extra arguments, class names, training image size and validation crop_pct / interpolation
    that `vig train` stores with its weights ({} for other files; None where a file predates a field): safetensors
    metadata, or the keys of a last.pth."""
    path = str(checkpoint)
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, "pt") as f:
                meta = f.metadata() or {}
            kwargs = json.loads(meta["model_kwargs"]) if "model_kwargs" in meta else None
            return {"classes": json.loads(meta["classes"]) if "classes" in meta else None,
                    "img_size": meta.get("img_size"), "model": meta.get("model"), "model_kwargs": kwargs,
                    **_eval_transform(meta.get("crop_pct"), meta.get("interpolation"))}
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not ours, or unreadable: the weights' own loader has already said what is wrong
        return {}
    if not isinstance(ckpt, dict) or "classes" not in ckpt:
        return {}
    config = ckpt.get("config") or {}
    # files since session 52 hold the resolved transform; older ones only what the run asked for (None: defaults)
    resolved = {**config, **{k: v for k, v in (ckpt.get("eval_transform") or {}).items() if v is not None}}
    return {"classes": ckpt["classes"], "img_size": resolved.get("img_size"), "model": config.get("model"),
            "model_kwargs": config.get("model_kwargs") or None,
            **_eval_transform(resolved.get("crop_pct"), resolved.get("interpolation"))}


def recorded_model_kwargs(saved, model_name):
    """The --model-kwargs a `vig train` run recorded (saved: saved_run_info), for the model it recorded only: another
    model's arguments would build something else."""
    return dict(saved.get("model_kwargs") or {}) if saved.get("model") == model_name else {}


def finetune_model_and_kwargs(pretrained, model_name, model_kwargs):
    """(model, kwargs) to fine-tune from `pretrained` (vig train, det, seg): each flag when given, else what a
    `vig train` / `vig convert` file records; None where neither says (the command's own default applies)."""
    if not pretrained or (model_name and model_kwargs is not None):
        return model_name, model_kwargs
    saved = saved_run_info(pretrained)
    model_name = model_name or saved.get("model")
    if model_kwargs is None and model_name:
        model_kwargs = recorded_model_kwargs(saved, model_name)
    return model_name, model_kwargs


def model_for_checkpoint(model_name, checkpoint, saved, flag="--model"):
    """The model to build: the one named on the command line, else the one a `vig train` / `vig convert`
    checkpoint records (saved: its saved_run_info). Other files (official releases) name none, so the flag is
    needed for them."""
    if model_name:
        recorded = saved.get("model")
        if recorded and recorded != model_name:  # said first: a strict load's list of mismatched keys follows
            print(f"note: {checkpoint} records the model {recorded}; {flag} {model_name} builds another one "
                  f"(leave {flag} out to build {recorded})", file=sys.stderr)
        return model_name
    if checkpoint is None:
        raise UsageError(f"{flag} is required without a checkpoint")
    check_checkpoint_path(os.fspath(checkpoint))  # a missing file records nothing: say so, not that the flag is needed
    if saved.get("model"):
        return saved["model"]
    raise UsageError(f"{flag} is required: {checkpoint} does not record its model (checkpoints written by "
                     "`vig train` and `vig convert` do; official releases do not)")


def _eval_transform(crop_pct, interpolation):
    """The transform training validated with. 'random' exists for training only; its validation ran bilinear
    (vig.data.build._timm_transform), so that is what reproduces the logged score."""
    return {"crop_pct": float(crop_pct) if crop_pct not in (None, "", "None") else None,
            "interpolation": "bilinear" if interpolation == "random" else interpolation or None}
