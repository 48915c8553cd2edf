"""Shared timm plumbing for the ViG families: pretrained cfgs, the checkpoint filter and input checks."""
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

HF_ORIGIN = "hustvl/ViG"  # the official release: https://huggingface.co/hustvl/ViG


def vig_cfg(hf_hub_filename, top1, **kwargs):
    """An 'in1k' cfg: official eval transform (resize 256 bicubic, center crop 224), ImageNet mean/std."""
    return {
        "hf_hub_id": HF_ORIGIN,
        "hf_hub_filename": hf_hub_filename,
        "url": f"https://huggingface.co/{HF_ORIGIN}/resolve/main/{hf_hub_filename}",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.875,
        "crop_mode": "center",
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "paper_ids": "arXiv:2405.18425",
        "paper_name": "ViG: Linear-complexity Visual Sequence Learning with Gated Linear Attention",
        "origin_url": f"https://github.com/{HF_ORIGIN}",
        "notes": (f"paper ImageNet-1k top-1 {top1}% at 224 (official weights)",),
        **kwargs,
    }


def pretrained_filter_fn(state_dict, model):
    """Adapt an official/timm checkpoint to `model`: unwrap, legacy ViG-H names, and a pos_embed for
    another grid resized with the release's runtime rule (bicubic, align_corners=False, no antialias).

    The work lives in vig.models.checkpoint, imported lazily so this module stays light.
    """
    from vig.models.checkpoint import checkpoint_filter_fn
    return checkpoint_filter_fn(state_dict, model)


def check_image_input(x, in_chans, min_size, model_name):
    """Reject what would otherwise fail deep inside a conv with an opaque message."""
    if x.dim() != 4:
        raise ValueError(f"{model_name}: expected a 4-D image batch [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(f"{model_name}: expected {in_chans} input channels, got {x.shape[1]} "
                         f"(input shape {tuple(x.shape)}; build the model with in_chans={x.shape[1]}?)")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"{model_name}: image {x.shape[-2]}x{x.shape[-1]} is too small for the stem; "
                         f"height and width must be >= {min_size}")


def model_in_chans(model):
    """Input channels of a built model: its first conv's weight (named by the pretrained cfg), else its `in_chans`,
    else its pretrained cfg's input size."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    weight = model.state_dict().get(f"{first}.weight") if isinstance(first, str) else None
    if weight is not None and weight.ndim == 4:
        return int(weight.shape[1])
    return getattr(model, "in_chans", None) or cfg.get("input_size", (3,))[0]


def create_for_shapes(name, **kwargs):
    """timm.create_model on the meta device (shapes only: no memory, no init cost), or a real build where the
    builder reads tensor values at init (.item() / .tolist()), which meta tensors refuse. A real error of the
    builder comes back from the second try."""
    import timm
    import torch
    try:
        with torch.device("meta"):
            return timm.create_model(name, **kwargs)
    except Exception:
        return timm.create_model(name, **kwargs)
