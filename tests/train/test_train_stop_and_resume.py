"""Stopping a run (Ctrl-C, a kill mid-write) and resuming it: what is kept, what a plain rerun reuses, and each
change a resumed run cannot take refused by name. Runs on a tiny RGB ImageFolder (3 classes x 8 PNGs, 32 px)."""
import csv
import shutil

import pytest

from trainkit import folder_args, image_folder, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.train import checkpointing as ck

FAST = ["--warmup-epochs", "0", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return image_folder(root / "ds"), image_folder(root / "ds5", classes=5)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """A finished 1-epoch run (3 steps); tests resume copies of it."""
    from vig.cli import main
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(folder_args(data[0], out, *FAST)) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "r")
    return tmp_path / "r"


def _steps(out):
    return [int(r["step"]) for r in csv.DictReader(open(out / "steps.csv"))]


def _one_line_error(err, *phrases):
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for p in phrases:
        assert p in err, err


def test_ctrl_c_before_the_first_checkpoint_then_overwrite_starts_again(vig_cli, data, tmp_path, monkeypatch):
    """Every message names the one way out (--overwrite): a folder without a checkpoint is never reused silently,
    since it may be a run still in its first epoch."""
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("vig.train.engine.train_one_epoch", interrupted)
    out = tmp_path / "r"
    code, _, err = vig_cli(folder_args(data[0], out, *FAST))
    assert code == 130
    _one_line_error(err, "interrupted", "no checkpoint was written yet", "with --overwrite")
    (out / "tensorboard").mkdir()  # as a run with TensorBoard on leaves it
    (out / "steps.csv").write_text("epoch,step,loss,lr\n")  # as a stop just before the first last.pth leaves it
    monkeypatch.undo()
    for extra in (["--resume"], []):
        code, _, err = vig_cli(folder_args(data[0], out, *FAST, *extra))
        assert code == 2
        _one_line_error(err, "no checkpoint", "start it again with --overwrite")
    code, stdout, err = vig_cli(folder_args(data[0], out, *FAST, "--overwrite"))
    assert code == 0, err
    assert (out / ck.LAST).is_file() and not (out / "tensorboard").exists()  # the stale events went with it


def test_ctrl_c_mid_epoch_keeps_the_checkpoint_and_its_step_points(vig_cli, data, tmp_path, monkeypatch):
    real_save, saves = ck.atomic_torch_save, []

    def interrupted_at_the_second_save(obj, path):
        saves.append(obj["global_step"])
        if len(saves) == 2:
            raise KeyboardInterrupt
        real_save(obj, path)
    monkeypatch.setattr(ck, "atomic_torch_save", interrupted_at_the_second_save)
    out = tmp_path / "r"
    args = folder_args(data[0], out, *FAST, "--ckpt-every-steps", "1")
    code, _, err = vig_cli(args)
    assert code == 130
    _one_line_error(err, f"the last checkpoint is {out / ck.LAST} (epoch 1, batch 1, step 1)", "--resume")
    assert _steps(out) == [1, 2]  # written before the checkpoint, so none is lost even if the save is cut short
    monkeypatch.undo()
    code, _, err = vig_cli(args + ["--resume"])
    assert code == 0, err
    assert _steps(out) == [1, 2, 3]


def test_stale_temp_files_go_on_resume_and_on_overwrite(vig_cli, data, run_copy):
    ours = [".last.pth.k2j3h4.tmp", ".steps.csv.abcd.tmp", ".curves.tmp.png", ".best.safetensors.x.tmp"]
    others = [".notes.txt.x.tmp", "notes.txt"]
    for name in ours + others:
        (run_copy / name).write_bytes(b"half")
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume"))
    assert code == 0, err
    assert not [n for n in ours if (run_copy / n).exists()]
    assert all((run_copy / n).exists() for n in others)
    (run_copy / ours[0]).write_bytes(b"half")
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--overwrite"))
    assert code == 0, err
    assert not (run_copy / ours[0]).exists() and (run_copy / "notes.txt").exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--batch-size", "4"], "was trained with a total batch of 8, not --batch-size 4 x 1 process(es)"),
    (["--batch-size", "16"], "was trained with a total batch of 8, not --batch-size 16 x 1 process(es)"),
    (["--limit-train", "16"], "the training data now gives 2 batches per epoch, the run had 3"),
])
def test_resume_refuses_another_batch(vig_cli, data, run_copy, extra, phrase):
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume") + extra)
    assert code == 2
    _one_line_error(err, phrase)


def test_resume_with_more_epochs_needs_reschedule_which_stretches_the_lr(vig_cli, data, run_copy):
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume", epochs=2))
    assert code == 2
    _one_line_error(err, "was planned for 1 epochs", "--epochs 2 needs --reschedule")
    code, out, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume", "--reschedule", epochs=2))
    assert code == 0, err
    assert "the lr schedule is rebuilt (epochs 2 instead of 1)" in out
    lrs = {int(r["step"]): float(r["lr"]) for r in csv.DictReader(open(run_copy / "steps.csv"))}
    assert sorted(lrs) == list(range(1, 7))
    min_lr = lrs[3]  # the 1-epoch run ended at min_lr; the stretched cosine rises again and ends there
    assert lrs[4] > 10 * min_lr and lrs[6] == pytest.approx(min_lr)


def test_resume_refuses_schedule_and_optimizer_changes_it_would_ignore(vig_cli, data, run_copy):
    """The restored scheduler and optimizer state would overrule a new --min-lr or --weight-decay without a word."""
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume", "--min-lr", "1e-4"))
    assert code == 2
    _one_line_error(err, "--min-lr 0.0001 (was", "add --reschedule")
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume", "--weight-decay", "0.1"))
    assert code == 2
    _one_line_error(err, "--weight-decay 0.1 (was 0.05) cannot change on resume", "--pretrained")


def test_reschedule_without_resume_is_refused(vig_cli, data, tmp_path):
    code, _, err = vig_cli(folder_args(data[0], tmp_path / "r", "--reschedule"))
    assert code == 2
    _one_line_error(err, "--reschedule only applies with --resume")
    assert not (tmp_path / "r").exists()


def test_resume_on_other_classes_or_head_names_the_difference(vig_cli, data, run_copy):
    code, _, err = vig_cli(folder_args(data[1], run_copy, *FAST, "--resume"))
    assert code == 2
    _one_line_error(err, "trained on 3 classes (c0, c1, c2)", "has 5 (c0, c1, c2, c3, c4)")
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume", "--num-classes", "7"))
    assert code == 2
    _one_line_error(err, "head.weight (model [7, 128], checkpoint [3, 128])")


def test_banner_and_eval_report_the_rgb_input_the_model_was_built_for(vig_cli, data, run_copy, tmp_path):
    code, out, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume"))
    assert code == 0, err
    assert "3 classes, input (3, 32, 32)" in out
    code, out, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", str(run_copy / ck.BEST_RAW),
                              "--data", str(data[0]), "--json", str(tmp_path / "e.json")])
    assert code == 0, err
    assert "| 3x32x32" in out


def test_a_saved_config_starts_a_new_run_and_touches_no_other(vig_cli, data, run_copy, tmp_path):
    """config.yaml keeps no per-command flag: a resumed (or --overwrite) run's file once carried resume: true into
    a new folder ("no checkpoint to resume from") and overwrite: true over a finished run there."""
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume"))
    assert code == 0, err
    saved = (run_copy / "config.yaml").read_text()
    assert "resume:" not in saved and "overwrite:" not in saved and "reschedule:" not in saved
    legacy = tmp_path / "legacy.yaml"  # a file written before, with both keys
    legacy.write_text(saved + "resume: true\noverwrite: true\n")
    other = tmp_path / "other"
    shutil.copytree(run_copy, other)
    code, _, err = vig_cli(["train", "--config", str(legacy), "--output", str(other), "--no-progress"])
    assert code == 2
    note, error = err.strip().splitlines()
    assert "ignoring resume, overwrite" in note and "already holds a run" in error
    fresh = tmp_path / "fresh"
    code, _, err = vig_cli(["train", "--config", str(legacy), "--output", str(fresh), "--no-progress"])
    assert code == 0, err
    assert (fresh / ck.LAST).is_file()


def test_resuming_a_finished_run_keeps_its_summary(vig_cli, data, run_copy):
    import json
    before = json.loads((run_copy / "summary.json").read_text())
    code, printed, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume"))
    assert code == 0, err
    assert "already trained its" in printed and "resumed from" not in printed  # no epoch past the end announced
    after = json.loads((run_copy / "summary.json").read_text())
    assert after["final"] is not None and after["final"]["top1"] == pytest.approx(before["final"]["top1"])
    assert after["best_top1"] == before["best_top1"]


def test_a_folder_another_live_run_writes_to_is_refused(vig_cli, data, run_copy):
    """A second run in one folder (a resume beside a resume, or --overwrite under a live run) would interleave
    checkpoints; the rank-0 process's lock refuses it and nothing in the folder changes. A dead process's lock
    (a SIGKILL leaves it) is taken over, and a run that ends removes its own."""
    import os
    import socket
    import subprocess
    import sys
    from vig.train.run_folder import LOCK
    assert not (run_copy / LOCK).exists()  # the finished run removed its lock
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_copy / LOCK).write_text(f"{socket.gethostname()} {live.pid} -\n")
        before = {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()}
        for extra in (["--resume", "--epochs", "2", "--reschedule"], ["--overwrite"]):
            code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, *extra))
            assert code == 2
            _one_line_error(err, f"in use by another vig run (pid {live.pid}", LOCK)
        assert {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()} == before
    finally:
        live.kill()
        live.wait()
    # the same pid, now gone: a stale lock
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--resume", "--epochs", "2", "--reschedule"))
    assert code == 0, err
    assert not (run_copy / LOCK).exists() and _steps(run_copy)[-1] == 6
    (run_copy / LOCK).write_text(f"other-host {os.getpid()} -\n")  # can't be checked from here: refused, named
    code, _, err = vig_cli(folder_args(data[0], run_copy, *FAST, "--overwrite"))
    assert code == 2 and "on other-host" in err


def test_the_lock_of_rank_0_does_not_stop_its_own_job(tmp_path, monkeypatch):
    """Under torchrun a slower rank checks the folder after rank 0 locked it: same job, not another run."""
    import subprocess
    import sys
    from vig.errors import UsageError
    from vig.train import run_folder
    for k, v in (("TORCHELASTIC_RUN_ID", "j1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(k, v)
    rank0 = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket
        (tmp_path / run_folder.LOCK).write_text(f"{socket.gethostname()} {rank0.pid} {run_folder._job()}\n")
        run_folder.check_not_locked(tmp_path)
        monkeypatch.setenv("MASTER_PORT", "29501")  # another job on this host
        with pytest.raises(UsageError, match=f"pid {rank0.pid}"):
            run_folder.check_not_locked(tmp_path)
    finally:
        rank0.kill()
        rank0.wait()


def test_a_lock_taken_right_after_the_check_is_not_removed(tmp_path, monkeypatch):
    """Two starts at once: when another run's lock appears between this start's check and its own lock, this start
    is refused and that lock stays (a start that removed it first would write beside a live run)."""
    import os
    import socket
    from vig.errors import UsageError
    from vig.train import run_folder
    checks = []
    stored_check = run_folder.check_not_locked

    def check_then_other_run_locks(out, flag="--output"):
        stored_check(out, flag)
        if not checks:  # the other run (this process's parent: alive) locks the folder just after the first check
            (out / run_folder.LOCK).write_text(f"{socket.gethostname()} {os.getppid()} -\n")
        checks.append(out)

    monkeypatch.setattr(run_folder, "check_not_locked", check_then_other_run_locks)
    with pytest.raises(UsageError, match=f"pid {os.getppid()}"):
        run_folder.take_lock(tmp_path)
    assert (tmp_path / run_folder.LOCK).read_text().split()[1] == str(os.getppid())
    assert sorted(p.name for p in tmp_path.iterdir()) == [run_folder.LOCK]  # no temp file left


def test_a_run_stopped_after_an_epoch_has_its_curves(vig_cli, data, tmp_path, monkeypatch):
    """curves.png was drawn only when the run finished: a run stopped in its second epoch had none until resumed."""
    real = ck.atomic_torch_save
    saves = []

    def stop_in_the_second_epoch(obj, path):
        saves.append(obj["epoch"])
        if obj["epoch"] == 1 and obj["batch"] > 0:
            raise KeyboardInterrupt
        real(obj, path)
    monkeypatch.setattr(ck, "atomic_torch_save", stop_in_the_second_epoch)
    out = tmp_path / "r"
    code, _, err = vig_cli(folder_args(data[0], out, *FAST, "--epochs", "2", "--ckpt-every-steps", "1"))
    assert code == 130, err
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
