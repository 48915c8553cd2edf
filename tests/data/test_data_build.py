from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vig.data.build import DataConfig, build_eval, build_train_val
from vig.errors import UsageError

DC = DataConfig((3, 8, 8), (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)


def test_eval_root_with_train_but_no_val(tmp_path):
    for c in ("cat", "dog"):
        _img(tmp_path / "train" / c / "a.png")
    with pytest.raises(UsageError, match=f"{tmp_path} has no val/ folder"):
        build_eval(str(tmp_path), None, DC)
    _img(tmp_path / "validation" / "dog" / "b.png")  # the other usual name
    ds, classes = build_eval(str(tmp_path), None, DC)
    assert classes == ["cat", "dog"] and len(ds) == 1 and ds[0][1] == 1


def test_eval_folder_that_is_itself_a_val_set(tmp_path):
    for c in ("cat", "dog"):
        _img(tmp_path / c / "a.png")
    ds, classes = build_eval(str(tmp_path), None, DC)
    assert classes == ["cat", "dog"] and len(ds) == 2


def test_random_interpolation_trains_and_validates(tmp_path):
    for split in ("train", "val"):
        _img(tmp_path / split / "cat" / "a.png")
    cfg = SimpleNamespace(data=str(tmp_path), hflip=0.5, auto_augment=None, reprob=0.0, limit_train=None,
                          limit_val=None)
    dc = DataConfig((3, 8, 8), (0.5,) * 3, (0.5,) * 3, "random", 1.0)
    train, val, _ = build_train_val(cfg, dc)
    assert train[0][0].shape == val[0][0].shape == (3, 8, 8)


def test_limit_draws_from_every_class(tmp_path):
    import numpy as np
    from PIL import Image

    from vig.data.build import _limit
    from vig.data.folder import CheckedImageFolder
    for c in ("a", "b", "c"):
        (tmp_path / c).mkdir()
        for i in range(20):
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / c / f"{i}.png")
    first = _limit(CheckedImageFolder(tmp_path), 12)
    again = _limit(CheckedImageFolder(tmp_path), 12)
    assert len(first.samples) == 12 and first.samples == again.samples  # the same subset every time
    assert set(first.targets) == {0, 1, 2}
    assert [label for _, label in first.samples] == first.targets
