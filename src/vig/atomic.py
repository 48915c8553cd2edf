"""Atomic file writes for every result, checkpoint and plot the package writes: a temp file in the target's
folder, then os.replace, so a crash or a failed write leaves the previous file (or none), never a half-written
one. mkstemp makes its temp file owner-only, so the result is given the mode a plain open() would have given
it (0666 less the umask); otherwise logs and checkpoints came out unreadable to the rest of a team."""
import os
import tempfile


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
