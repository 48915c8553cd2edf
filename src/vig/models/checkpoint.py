"""Loading, filtering and saving ViG checkpoints (official `.pth` and `.safetensors`).

`checkpoint_filter_fn` is what timm's `build_model_with_cfg(pretrained_filter_fn=...)` calls, so
`timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))` loads every official format.
Everything else here is used by `vig convert` / `vig predict` and by training code that resumes from weights.
"""
import math
import os
import pickle
import re
import tempfile
import zipfile

import torch
from torch import nn

from vig.errors import UsageError


class CheckpointError(UsageError):
    """A checkpoint that cannot be read or does not fit the model."""


# Wrapper keys, in order of preference. EMA wins over raw weights when both are present: that is what timm's own
# file loader does (use_ema=True) and what the official `--pretrained` route loads into the EMA model. The official
# `best_acc_ema_ckpt.pth` stores its EMA weights under 'model' anyway, so single-key files are unambiguous.
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")

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


def unwrap_state_dict(checkpoint):
    """Return the state_dict inside `checkpoint` (a wrapper dict or already a bare state_dict)."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint is a {type(checkpoint).__name__}, expected a dict of tensors")
    for key in WRAPPER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, dict):
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
    """Bicubic-resample a (1, N, C) pos_embed to the model's grid; other mismatches are left for strict loading."""
    from timm.layers import resample_abs_pos_embed

    target = getattr(model, "pos_embed", None)
    if not isinstance(target, torch.Tensor) or posemb.ndim != 3 or target.ndim != 3:
        return posemb
    if posemb.shape == target.shape or posemb.shape[-1] != target.shape[-1]:
        return posemb
    old_side = math.isqrt(posemb.shape[1])
    if old_side * old_side != posemb.shape[1]:
        raise CheckpointError(f"checkpoint pos_embed has {posemb.shape[1]} tokens, not a square grid; cannot resample")
    new_grid = _model_grid(model, target.shape[1])
    return resample_abs_pos_embed(posemb, new_size=list(new_grid), old_size=[old_side, old_side],
                                  num_prefix_tokens=0, interpolation="bicubic", antialias=True)


def checkpoint_filter_fn(state_dict, model):
    """Turn any official/timm checkpoint layout into `model`'s key names.

    Accepts {'model': sd}, {'model_ema': sd}, {'state_dict': sd} or a bare sd (timm may or may not have unwrapped it),
    strips DDP/compile prefixes, renames legacy ViG-H keys (ViG-H models only) and resamples `pos_embed` to the
    model's grid. Nothing is dropped: any remaining mismatch is reported by strict loading.
    """
    sd = unwrap_state_dict(state_dict)
    sd = {_strip_prefixes(k): v for k, v in sd.items()}
    if model is not None and is_vig_h(model):
        sd = rename_vig_h_legacy(sd)
    if model is not None and "pos_embed" in sd:
        sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], model)
    return sd
