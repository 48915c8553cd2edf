import numpy as np
import pytest
from PIL import Image

from vig.data.folder import CheckedImageFolder
from vig.errors import UsageError


def _img(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_good_folder(tmp_path):
    _img(tmp_path / "cat" / "a.png")
    _img(tmp_path / "dog" / "b.jpg")
    ds = CheckedImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and len(ds) == 2 and ds[1][1] == 1


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        CheckedImageFolder(tmp_path / "nope")
    with pytest.raises(UsageError, match="no class sub-folders"):
        CheckedImageFolder(tmp_path)
    (tmp_path / "cat").mkdir()
    _img(tmp_path / "dog" / "b.png")
    with pytest.raises(UsageError, match=r"class folder .*cat holds no images"):
        CheckedImageFolder(tmp_path)


def test_corrupt_images_are_skipped_and_named(tmp_path, capsys):
    _img(tmp_path / "cat" / "a.png")
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = CheckedImageFolder(tmp_path)
    assert len(ds) == 1
    err = capsys.readouterr().err
    assert "skipping 1 corrupt image file(s)" in err and "broken.png" in err


def test_all_corrupt_is_an_error(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="no readable images"):
        CheckedImageFolder(tmp_path)


def test_val_class_unknown_to_train(tmp_path):
    _img(tmp_path / "val" / "zebra" / "a.png")
    with pytest.raises(UsageError, match="classes not in the training set: zebra"):
        CheckedImageFolder(tmp_path / "val", classes=["cat", "dog"])
