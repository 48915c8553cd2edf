"""vig.atomic: every file the package writes goes through it. A result gets the mode plain open() gives (the temp
file from mkstemp is owner-only), and a failed write leaves the earlier file, or nothing, and no temp file."""
import json
import os

import pytest

from vig.atomic import atomic_write, atomic_write_path


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_file_has_the_umask_mode(tmp_path, umask_022):
    path = tmp_path / "metrics.json"
    atomic_write(path, lambda f: f.write("{}"), binary=False)
    atomic_write_path(tmp_path / "w.bin", lambda tmp: open(tmp, "wb").write(b"x"))
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "w.bin").stat().st_mode & 0o777) == oct(0o644)


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "r.json"
    atomic_write(path, lambda f: json.dump({"ok": 1}, f), binary=False)
    with pytest.raises(TypeError):
        atomic_write(path, lambda f: json.dump({"bad": object()}, f), binary=False)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_training_checkpoint_and_safetensors_are_readable_by_others(tmp_path, umask_022):
    import torch

    from vig.models.checkpoint import save_safetensors_atomic
    from vig.train.checkpointing import atomic_torch_save
    atomic_torch_save({"a": torch.zeros(2)}, tmp_path / "last.pth")
    save_safetensors_atomic({"a": torch.zeros(2)}, str(tmp_path / "best.safetensors"))
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        "last.pth": oct(0o644), "best.safetensors": oct(0o644)}


def test_viz_files_get_the_umask_mode_too(tmp_path, umask_022):
    from vig.viz.io import write_files
    write_files(tmp_path / "viz", {"a.png": b"x", "a.npz": b"y"})
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "viz").iterdir()} == {oct(0o644)}


def test_output_checks_name_what_is_wrong_and_create_nothing(tmp_path):
    from vig.atomic import check_output_file, writable_folder
    from vig.errors import UsageError
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert writable_folder(tmp_path / "new" / "deeper", "--out") and not (tmp_path / "new").exists()
    with pytest.raises(UsageError, match="--out .*afile exists and is not a folder"):
        writable_folder(afile, "--out")
    with pytest.raises(UsageError, match="afile is not a folder"):
        writable_folder(afile / "sub", "--out")
    with pytest.raises(UsageError, match="is a folder; give a file name"):
        check_output_file(tmp_path, "output")
    with pytest.raises(UsageError, match="does not exist"):
        check_output_file(tmp_path / "no" / "o.safetensors", "output")
    if os.path.isdir("/proc/self"):  # a folder no one may create files in, even root
        with pytest.raises(UsageError, match="cannot write in /proc"):
            writable_folder("/proc/vig_out", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
