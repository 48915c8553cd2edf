"""Atomic file writes for every result, checkpoint and plot the package writes: a temp file in the target's
folder, then os.replace, so a crash or a failed write leaves the previous file (or none), never a half-written
one. mkstemp makes its temp file owner-only, so the result is given the mode a plain open() would have given
it (0666 less the umask); otherwise logs and checkpoints came out unreadable to the rest of a team."""
import os
import tempfile

from vig.errors import UsageError


def open_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_path(path, write_to):
    """write_to(tmp_path) writes the whole file (for writers that take a file name: safetensors, matplotlib)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        write_to(tmp)
        os.chmod(tmp, open_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write(path, write, binary=True):
    """write(f) writes the whole file to an open file object; it is fsynced before it replaces `path`."""
    def write_to(tmp):
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    return atomic_write_path(path, write_to)


def writable_folder(path, flag):
    """Check that the output folder `path` (a command's `flag`) exists or can be made, and takes files, so a bad --out
    fails with one line before any work, not with a traceback after it. Creates nothing: the writers make the
    folder when they write, so a run that fails first leaves no empty folder."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path} exists and is not a folder")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: {parent} is not a folder")
    _check_takes_files(parent, path, flag)
    return path


def check_output_file(path, flag):
    """An output file's path: not a folder, in a folder that exists and takes a new file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")
    _check_takes_files(folder, path, flag)
    return path


def _check_takes_files(folder, path, flag):
    """A file can be made in `folder` (read-only mounts, /proc and permissions refuse it; root passes os.access)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write in {folder} ({e.strerror or e})") from None
