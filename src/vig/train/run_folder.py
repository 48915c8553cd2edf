"""A run's output folder: which runs may use it, what a new run clears, and what to say when a run is stopped."""
import shutil
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


def check_output(cfg):
    """Refuse to mix two runs in one folder unless asked (every rank checks, so all stop with the same message).
    Nothing is created here: the folder is made by make_output once the data, model and weights have loaded, so a
    run that fails to start leaves no empty folder behind."""
    out = Path(cfg.output)
    writable_folder(out, "--output")  # a file in the way, or a folder that takes no files: before any loading
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
    """Rank 0, after setup: a new run (--overwrite) removes only our own run files; any run removes the temp files
    a kill mid-write left; then the folder exists."""
    out = Path(cfg.output)
    if not cfg.resume:
        for name in RUN_FILES:
            path = out / name
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in stale_temp_files(out):
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def stale_temp_files(out):
    """Temp files of our run files that a SIGKILL during an atomic write left. Deleted before this process writes:
    check_output refuses a second new run in a folder that holds one (two resumes of one folder at once are not
    guarded: like two `cp` into one file, that is the user's to avoid)."""
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


