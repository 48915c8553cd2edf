"""timm's RandAugment / AutoAugment posterize under Pillow 13.

At its top magnitude timm's "increasing" posterize keeps 0 bits. Pillow up to 12 turned that into a black image;
Pillow 13 raises "bits must be between or equal to 1 and 8", and a DataLoader worker that raises ends the run. With
the paper recipe's rand-m9-mstd0.5-inc1, about 0.15% of images drew it (31 in 20,000, timm 1.0.31): a real dataset
hit it within its first epoch. guard_posterize gives the ops of one transform the old result instead, so the recipe
means what it meant before, on any Pillow.
"""
from PIL import ImageOps


def posterize_any_bits(img, bits_to_keep, **_):
    if bits_to_keep >= 8:
        return img
    if bits_to_keep < 1:  # what ImageOps.posterize gave before Pillow 13: every value masked to 0
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def guard_posterize(transform):
    """transform with every timm augment op that posterizes switched to posterize_any_bits (in place; returned)."""
    from timm.data import auto_augment
    for op in _augment_ops(transform):
        if getattr(op, "aug_fn", None) is auto_augment.posterize:
            op.aug_fn = posterize_any_bits
    return transform


def _augment_ops(transform):
    """The AugmentOps of a (composed) transform: RandAugment and AugMix hold a list, AutoAugment a list of
    sub-policies."""
    for t in getattr(transform, "transforms", [transform]):
        for op in getattr(t, "ops", []):
            yield op
        for sub_policy in getattr(t, "policy", []):
            yield from sub_policy
