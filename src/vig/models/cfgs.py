"""Shared timm plumbing for the ViG families: pretrained cfgs, the checkpoint filter and input checks."""
import torch.nn as nn
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


def checked_out_indices(out_indices, count, model_name, unit="block", counted_by="depth"):
    """features_only's out_indices, refused unless each names a different one of the model's `count` blocks (or
    stages): timm lists one feature_info entry per index while forward_intermediates returns each block once, so an
    index repeated or out of range would leave a neck built from feature_info expecting outputs that never come."""
    where = f"{model_name} has {count} {unit}{'s' if count != 1 else ''} ({counted_by} {count})"
    if isinstance(out_indices, int):  # timm's "the last n"
        if not 0 < out_indices <= count:
            raise ValueError(f"{model_name}: out_indices={out_indices} asks for the last {out_indices} {unit}s, "
                             f"but {where}")
        return out_indices
    indices = tuple(out_indices)
    if not indices:
        raise ValueError(f"{model_name}: out_indices is empty; features_only needs at least one {unit}")
    absolute = [i + count if i < 0 else i for i in indices]
    outside = [i for i, a in zip(indices, absolute) if not 0 <= a < count]
    if outside:
        raise ValueError(f"{model_name}: out_indices {indices}: {outside} out of range; {where}, so indices run "
                         f"0..{count - 1} (or -{count}..-1 from the end)")
    repeated = sorted({a for a in absolute if absolute.count(a) > 1})
    if repeated:
        raise ValueError(f"{model_name}: out_indices {indices} names {unit} {repeated} more than once; {where} and "
                         f"features_only returns each {unit} once")
    return indices


def with_recorded_num_classes(variant, pretrained, kwargs):
    """`kwargs` with the pretrained cfg's num_classes set to the class count that a `vig train` / `vig convert` file
    records, when that file is the one timm will load.

    timm keeps a checkpoint's classifier only when the model's num_classes equals the cfg's, and the registered cfgs
    say 1000 (ImageNet): a 3-class run's head was silently re-initialised (num_classes=3) or failed with a bare size
    mismatch (num_classes omitted). Official files record nothing and keep the registry's cfg; a num_classes the
    caller put in the overlay or in a pretrained_cfg dict wins, as they said what the file holds."""
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    given_cfg = kwargs.get("pretrained_cfg")
    if not pretrained or "num_classes" in overlay or (isinstance(given_cfg, dict) and "num_classes" in given_cfg):
        return kwargs
    from timm.models import resolve_pretrained_cfg
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=given_cfg, pretrained_cfg_overlay=overlay)
    if not cfg.file or cfg.state_dict is not None or cfg.source in ("hf-hub", "local-dir"):
        return kwargs  # timm loads something other than cfg.file (same precedence as its _resolve_pretrained_source)
    from vig.models.checkpoint import saved_run_info
    classes = saved_run_info(cfg.file).get("classes")
    if not classes:
        return kwargs
    return dict(kwargs, pretrained_cfg_overlay=dict(overlay, num_classes=len(classes)))


def intermediates_result(intermediates, final, output_dict):
    """forward_intermediates' return in timm's forms: the list alone (final None: intermediates_only), (final, list),
    or with output_dict the dict timm's ViTs give (image_intermediates, and image_features where final is formed)."""
    if output_dict:
        out = {"image_intermediates": intermediates}
        if final is not None:
            out["image_features"] = final
        return out
    return intermediates if final is None else (final, intermediates)


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


def unread_edge(model, side):
    """(pixels of a `side`-px input that plain ViG's conv stem leaves unread, the stem's stride), or None for other
    stems (timm's patch embeddings, ViG-H's stride-2 convs), which read every size whole or refuse it."""
    embed = getattr(model, "patch_embed", None)
    if not hasattr(embed, "unread_pixels"):
        return None
    return embed.unread_pixels(side), embed.stride


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


def new_head(model, in_features, num_classes, init_weight):
    """reset_classifier's head: the official init (weight N(0, .02) by `init_weight`, bias 0), so that a head reset
    through timm's API starts like one built by create_model(num_classes=...) (nn.Linear's own init has ~2x the
    std), in the model's dtype and on its device; nn.Identity for num_classes 0."""
    if num_classes <= 0:
        return nn.Identity()
    ref = next(model.parameters())
    head = nn.Linear(in_features, num_classes, device=ref.device, dtype=ref.dtype)
    init_weight(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    return head
