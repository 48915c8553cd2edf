"""Building a model for visualisation: any timm name (ours register on `import vig.models`),
an optional checkpoint through the project's loader, and the input normalisation it expects."""
import sys
from pathlib import Path

import torch

from vig.errors import UsageError
from vig.viz.io import IMAGENET_MEAN, IMAGENET_STD


RANDOM_INIT_SEED = 0  # without a checkpoint: the same random weights, hence the same maps, on every run


def build_model(name, checkpoint=None, img_size=224, flags=("--model", "--checkpoint"), saved=None):
    """Returns the model in eval mode with frozen parameters (gradients are only wanted w.r.t. the input).

    flags: the options that named the model and its checkpoint, for error messages (`--compare` for erf's others).
    saved: the checkpoint's saved_run_info when the caller has read it (else it is read here)."""
    import timm

    try:
        import vig.models  # noqa: F401  (registers vig_* with timm)
    except ImportError:
        pass
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise UsageError(f"{flags[0]}: unknown model {name!r}{hint}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UsageError(f"{flags[1]}: file not found: {checkpoint}")
    extra = {}
    if checkpoint is not None:
        try:
            from vig.models.checkpoint import (checkpoint_build_kwargs, load_checkpoint_file, load_pretrained,
                                               recorded_model_kwargs, saved_run_info)
        except ImportError as e:
            raise UsageError(f"{flags[1]}: the checkpoint loader is unavailable ({e})") from None
        raw = load_checkpoint_file(checkpoint)
        # a fine-tuned checkpoint's head size and channels, and the --model-kwargs a `vig train` run recorded
        saved = saved_run_info(checkpoint) if saved is None else saved
        extra = {**checkpoint_build_kwargs(raw, name), **recorded_model_kwargs(saved, name)}
    if checkpoint is not None:
        model = _create(timm, name, img_size, **extra)
        load_pretrained(model, checkpoint, strict=True, raw=raw)
    else:
        model = _seeded_random(timm, name, img_size)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _seeded_random(timm, name, img_size):
    """Random weights, said so (maps of an untrained model are easy to mistake for a result), from a fixed seed
    that leaves the caller's random state as it was."""
    print(f"note: no checkpoint for {name}: random weights (seed {RANDOM_INIT_SEED}, the same every run)",
          file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return _create(timm, name, img_size)


def _create(timm, name, img_size, **extra):
    # ViG/ViG-H and conv nets take any size as built. timm ViTs fix their position embedding at
    # creation; dynamic_img_size keeps the checkpoint's shape and resamples it per forward.
    default = timm.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
    if name.startswith("vig") or tuple(default[1:]) == (img_size, img_size):
        return timm.create_model(name, pretrained=False, **extra)
    for kwargs in ({"dynamic_img_size": True}, {"img_size": img_size}):
        try:
            return timm.create_model(name, pretrained=False, **kwargs, **extra)
        except TypeError:
            continue
    return timm.create_model(name, pretrained=False, **extra)


def normalisation(model):
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    chans = getattr(model, "in_chans", len(mean))
    if len(mean) == 1 and chans != 1:  # a gray model fine-tuned on RGB (vig_fmnist, in_chans=3): one value each
        mean, std = mean * chans, std * chans
    return mean, std


def feature_map(model, x):
    """The last feature map before pooling as [B, C, h, w], for conv nets (NCHW), NHWC nets
    (timm Swin), and token models (ViT/DeiT with prefix tokens, plain ViG) on a square input."""
    feats = model.forward_features(x)
    if isinstance(feats, (list, tuple)):
        feats = feats[-1]
    if feats.dim() == 4:
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            feats = feats.permute(0, 3, 1, 2)
        return feats
    if feats.dim() != 3:
        raise UsageError(f"cannot find a spatial feature map in {type(model).__name__}.forward_features "
                         f"(got shape {tuple(feats.shape)})")
    tokens = feats[:, getattr(model, "num_prefix_tokens", 0):]
    n = tokens.shape[1]
    side = int(round(n ** 0.5))
    if side * side != n:
        raise UsageError(f"{type(model).__name__}: {n} output tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def centre_response(model, x):
    """Sum over channels of the ReLU'd centre location of the last feature map, summed over the batch.

    The ReLU (as in RepLKNet's ERF code) matters: the plain channel sum of a LayerNorm output with
    uniform weights (any freshly initialised ViT) is a constant, so its gradient would vanish."""
    fmap = feature_map(model, x)
    h, w = fmap.shape[-2:]
    return torch.relu(fmap[:, :, h // 2, w // 2]).sum()
