"""A run's output folder: which runs may use it, what a new run clears, and what to say when a run is stopped."""
import os
import shutil
import socket
from pathlib import Path

import torch

from vig.atomic import writable_folder
from vig.errors import UsageError
from vig.train import checkpointing as ck

RUN_FILES = ("config.yaml", ck.LAST, ck.BEST_RAW, ck.BEST_EMA, "metrics.csv", "steps.csv", "curves.png",
             "summary.json", "tensorboard")


# report.plot_curves' fixed temp name; the other writers' temp files are `.NAME.XXXXXXXX.tmp` (vig.atomic)
CURVES_TMP = ".curves.tmp.png"
# a folder with run files but no last.pth: stopped before its first checkpoint (or still in its first epoch)
STOPPED_EARLY = ("it has no checkpoint to --resume from; if no run is writing there, start it again with "
                 "--overwrite")


# held by the rank-0 process of the run writing to the folder: "HOST PID JOB"
LOCK = ".vig-train.lock"


def _job():
    """The torchrun job this process belongs to ("-" outside one): its other ranks check the folder after rank 0
    may have locked it, and must not take that lock for another run's."""
    keys = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")
    return ":".join(os.environ.get(k, "") for k in keys) if "MASTER_PORT" in os.environ else "-"


def check_output(cfg):
    """Refuse to mix two runs in one folder unless asked (every rank checks, so all stop with the same message).
    Nothing is created here: the folder is made by make_output once the data, model and weights have loaded, so a
    run that fails to start leaves no empty folder behind."""
    out = Path(cfg.output)
    writable_folder(out, "--output")  # a file in the way, or a folder that takes no files: before any loading
    check_not_locked(out)
    ours = [name for name in RUN_FILES if (out / name).exists()]
    resumable = (out / ck.LAST).is_file()
    if cfg.resume:
        if not resumable:
            hint = STOPPED_EARLY if ours else "start without --resume"
            raise UsageError(f"--resume: no checkpoint {out / ck.LAST} to resume from ({hint})")
        return
    if ours and not cfg.overwrite:
        # also a folder without a checkpoint: it may belong to a run still in its first epoch, which must not be wiped
        hint = "pass --resume to continue it or --overwrite to replace it" if resumable else STOPPED_EARLY
        raise UsageError(f"--output {out} already holds a run ({', '.join(ours)}); {hint}")


def make_output(cfg):
    """Rank 0, after setup: the folder exists and this process holds its lock; then a new run (--overwrite) removes
    only our own run files, and any run removes the temp files a kill mid-write left."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    take_lock(out)  # before removing anything: another run may have started since check_output
    if not cfg.resume:
        for name in RUN_FILES:
            path = out / name
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in stale_temp_files(out):
        path.unlink()


def _lock_owner(out):
    """(host, pid) in the folder's lock, or None when no process that may still run holds it: no lock, an
    unreadable one, or one of a process of this host that is gone (a SIGKILL leaves the file behind)."""
    try:
        host, pid, job = (out / LOCK).read_text().split()
        pid = int(pid)
    except (OSError, ValueError):
        return None
    if job != "-" and job == _job():
        return None
    if host != socket.gethostname():
        return host, pid  # another machine's process (a shared filesystem): it cannot be checked from here
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return host, pid


def check_not_locked(out, flag="--output"):
    owner = _lock_owner(out)
    if owner is not None:
        raise UsageError(f"{flag} {out} is in use by another vig run (pid {owner[1]} on {owner[0]}); wait for it "
                         f"or stop it (if that run is gone, delete {out / LOCK})")


def take_lock(out, flag="--output"):
    """Two runs writing to one folder (two resumes, or a resume beside a run) would interleave their checkpoints
    and logs. The lock appears with its contents (a hard link of a written temp file, which fails if a lock exists),
    so two starts at the same moment never read each other's empty file as a dead one's; and a lock is removed only
    once it was found to be a dead process's (taken over), never on the way to linking ours."""
    check_not_locked(out, flag)
    path = out / LOCK
    tmp = out / f"{LOCK}.{os.getpid()}.tmp"
    tmp.write_text(f"{socket.gethostname()} {os.getpid()} {_job()}\n")
    try:
        for stale_removed in (False, True):
            try:
                os.link(tmp, path)
                return
            except FileExistsError:
                check_not_locked(out, flag)  # a live run's lock: refused; else a dead process's, removed once
                if stale_removed:
                    raise UsageError(f"{flag} {out}: another run took its lock {path} at the same moment") from None
                path.unlink(missing_ok=True)
            except OSError:  # a filesystem without hard links: the lock is written after it appears
                tmp.replace(path)
                return
    finally:
        tmp.unlink(missing_ok=True)


def release_lock(out):
    """Remove the lock if this process holds it."""
    path = Path(out) / LOCK
    try:
        if path.read_text().split()[:2] == [socket.gethostname(), str(os.getpid())]:
            path.unlink()
    except OSError:
        pass


def stale_temp_files(out):
    """Temp files of our run files that a SIGKILL during an atomic write left. Deleted before this process writes:
    the folder's lock (take_lock) says no other run is writing there."""
    if not out.is_dir():
        return []
    found = [p for name in RUN_FILES for p in out.glob(f".{name}.*.tmp")]
    return found + [p for p in [out / CURVES_TMP] if p.is_file()]


def interrupted_note(cfg):
    """For Ctrl-C: what the run folder holds now and how to go on."""
    out = Path(cfg.output)
    if not (out / ck.LAST).is_file():
        return "no checkpoint was written yet; rerun the same command with --overwrite to start again"
    where = ""
    try:
        ckpt = torch.load(out / ck.LAST, map_location="cpu", weights_only=True)
        epoch, batch = ckpt["epoch"], ckpt["batch"]
        where = (f" (end of epoch {epoch}" if batch == 0 else f" (epoch {epoch + 1}, batch {batch}") \
            + f", step {ckpt['global_step']})"
    except Exception:  # a damaged file is reported by --resume itself, in full
        pass
    return f"the last checkpoint is {out / ck.LAST}{where}; continue with the same command plus --resume"


