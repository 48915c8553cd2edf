"""The paper recipe's RandAugment at its top posterize magnitude: a black image, as before Pillow 13, never the
ValueError that Pillow 13 raises for 0 bits (it ended training runs from a DataLoader worker)."""
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageOps
from timm.data import auto_augment, resolve_data_config

from vig.data.build import _timm_transform
from vig.data.posterize_guard import guard_posterize, posterize_any_bits


@pytest.fixture
def img():
    return Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8"))


def test_posterize_any_bits_matches_pillow_and_old_zero_bits(img):
    assert np.array_equal(np.asarray(posterize_any_bits(img, 3)), np.asarray(ImageOps.posterize(img, 3)))
    assert posterize_any_bits(img, 8) is img
    assert not np.asarray(posterize_any_bits(img, 0)).any()


def _posterize_ops(transform):
    return [op for t in transform.transforms for op in getattr(t, "ops", []) if "Posterize" in op.name]


def test_training_transform_posterizes_at_the_top_magnitude(img):
    cfg = SimpleNamespace(hflip=0.5, auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25)
    dc = SimpleNamespace(**resolve_data_config({"input_size": (3, 32, 32), "interpolation": "bicubic"}))
    transform = _timm_transform(dc, True, cfg)
    ops = _posterize_ops(transform)
    assert ops and all(op.aug_fn is posterize_any_bits for op in ops)
    op = ops[0]
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10.0, 0.0  # keeps 0 bits
    assert not np.asarray(op(img)).any()


def test_auto_augment_policies_are_guarded_too():
    policy = auto_augment.auto_augment_transform("original", {})
    guarded = guard_posterize(policy)
    ops = [op for sub in guarded.policy for op in sub]
    assert any(op.aug_fn is posterize_any_bits for op in ops)
    assert not any(op.aug_fn is auto_augment.posterize for op in ops)
