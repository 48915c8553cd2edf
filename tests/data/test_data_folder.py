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


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_corrupt_images_are_named_by_the_first_torchrun_process_only(tmp_path, capsys, monkeypatch, rank, said):
    monkeypatch.setenv("RANK", rank)
    _img(tmp_path / "cat" / "a.png")
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    assert len(CheckedImageFolder(tmp_path)) == 1  # every process drops it
    assert ("broken.png" in capsys.readouterr().err) is said


def test_all_corrupt_is_an_error(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="no readable images"):
        CheckedImageFolder(tmp_path)


def test_val_class_unknown_to_train(tmp_path):
    _img(tmp_path / "val" / "zebra" / "a.png")
    with pytest.raises(UsageError, match="classes not in the training set: zebra"):
        CheckedImageFolder(tmp_path / "val", classes=["cat", "dog"])


def test_an_unreadable_file_after_the_scan_is_replaced_by_a_neighbour(tmp_path, capsys):
    for i in range(3):
        _img(tmp_path / "cat" / f"{i}.png", value=10 * i)
    ds = CheckedImageFolder(tmp_path)
    (tmp_path / "cat" / "0.png").write_bytes(b"gone bad")
    img, label = ds[0]
    assert label == 0 and img.getpixel((0, 0)) == (10, 10, 10)  # 1.png stood in
    assert "skipping unreadable image" in capsys.readouterr().err


def test_a_folder_gone_after_the_scan_is_named(tmp_path, capsys):
    """Every file unreadable (an unmounted disk): a few stand-ins are tried, then an error names the folder. It was an
    UnboundLocalError after a warning for every image of the dataset."""
    import shutil
    for i in range(40):
        _img(tmp_path / "cat" / f"{i}.png")
    ds = CheckedImageFolder(tmp_path)
    shutil.rmtree(tmp_path / "cat")
    with pytest.raises(OSError, match=r"16 image\(s\) in a row unreadable .*is the data folder still there"):
        ds[3]
    assert capsys.readouterr().err.count("skipping unreadable image") == 16
