import gzip

import numpy as np
import pytest

from vig.data import idx
from vig.errors import UsageError


def test_fixture_is_real_fashion_mnist_subset():
    x, y = idx.load_split("train", idx.FIXTURE_DIR)
    xt, yt = idx.load_split("test", idx.FIXTURE_DIR)
    assert x.shape == (500, 28, 28) and y.shape == (500,) and x.dtype == np.uint8
    assert xt.shape == (200, 28, 28) and yt.shape == (200,)
    assert set(np.unique(y)) == set(range(10))  # all ten classes present
    assert 0.2 < x.mean() / 255 < 0.4  # Fashion-MNIST's mean pixel is 0.286
    assert "MIT" in (idx.FIXTURE_DIR / "LICENSE").read_text()


def test_idx_roundtrip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    idx.write_idx_gz(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a.gz"), a)
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_and_bad_magic_are_clear_errors(tmp_path):
    idx.write_idx_gz(tmp_path / "a.gz", np.zeros((4, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(UsageError, match="header says"):
        idx.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(UsageError, match="magic"):
        idx.read_idx(tmp_path / "magic")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UsageError, match="cannot read"):
        idx.read_idx(tmp_path / "bad.gz")


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(UsageError, match="apt-get install -y dataset-fashion-mnist"):
        idx.find_dir(tmp_path / "nope")
    (tmp_path / "some").mkdir()
    with pytest.raises(UsageError, match="missing or incomplete"):
        idx.find_dir(tmp_path / "some")


def test_torchvision_raw_layout_is_accepted(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "test"):
        x, y = idx.load_split(split, idx.FIXTURE_DIR)
        img_stem, lbl_stem = idx.FILES[split]
        (raw / img_stem).write_bytes(gzip.decompress((idx.FIXTURE_DIR / (img_stem + ".gz")).read_bytes()))
        idx.write_idx_gz(raw / (lbl_stem + ".gz"), y.astype(np.uint8))
    assert idx.find_dir(tmp_path) == raw
    x, y = idx.load_split("train", tmp_path)
    assert x.shape == (500, 28, 28)
