"""Mistakes found at startup with one line (exit 2) and nothing left on disk; data that is valid COCO / ADE but
unusual (box-only instances, images without sizes, ignored pixels) handled rather than crashing mid-run."""
import json
import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from conftest import SIZE, TINY, make_coco, make_seg
from vig.cli import main
from vig.downstream.ade import IGNORE, SegFolder
from vig.downstream.backbone import build_timm_backbone
from vig.downstream.coco import CocoInstances
from vig.downstream.detection import build_detector, evaluate_detection
from vig.downstream.engine import plain_worker_errors
from vig.downstream.segmentation import SEG_PRESET, build_segmentor
from vig.errors import UsageError

SEG_CLI = ["--backbone", "vig_tiny", "--model-kwargs", json.dumps(TINY), "--num-classes", "3", "--batch-size", "2",
           "--crop", "64", "--scale", "64", "64", "--head-channels", "16", "--device", "cpu", "--workers", "0"]


def seg_train(img_dir, ann_dir, out, *extra):
    return main(["seg", "train", "--train-images", img_dir, "--train-masks", ann_dir, "--out", out, "--iters", "1"]
                + SEG_CLI + list(extra))


def test_reduce_zero_label_keeps_the_ignore_label_ignored(segdata):
    img_dir, ann_dir = segdata
    raw = np.array(Image.open(os.path.join(ann_dir, "s0.png")))
    raw[-4:, :] = IGNORE  # already ignored in the file: must not become class 254
    Image.fromarray(raw).save(os.path.join(ann_dir, "s0.png"))
    _, lab = SegFolder(img_dir, ann_dir, 3, reduce_zero_label=True, scale=(64, 64), crop=64)[0]
    assert (lab[-4:] == IGNORE).all() and (lab[0, :8] == IGNORE).all()  # 255 stays, 0 becomes 255
    assert set(lab[8:-4].unique().tolist()) == {0, 1, 2}


def _box_only_and_no_sizes(ann):
    data = json.load(open(ann))
    data["annotations"][0]["segmentation"] = []  # box-only instance, as the training loader accepts
    del data["images"][1]["width"], data["images"][1]["height"]
    json.dump(data, open(ann, "w"))


def test_box_only_instances_and_missing_image_sizes_evaluate(coco):
    img_dir, ann, _ = coco
    _box_only_and_no_sizes(ann)
    ds = CocoInstances(img_dir, ann)
    assert (ds.images[2]["width"], ds.images[2]["height"]) == (SIZE, SIZE)  # read from the image header
    from vig.downstream.coco_eval import coco_evaluate, to_coco_results
    outs, ids = [], []
    for i in range(len(ds)):  # perfect predictions; the box-only one predicts its box as the mask
        _, t = ds[i]
        outs.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                     "masks": t["masks"][:, None].float()})
        ids.append(t["image_id"])
    m = coco_evaluate(ds.gt, to_coco_results(outs, ids, ds.label_to_cat))
    # mask AP ignores the box-only instance (neither hit nor false positive); box AP counts it
    assert m["bbox"]["AP"] == pytest.approx(1.0) and m["segm"]["AP"] == pytest.approx(1.0)
    model, _ = build_detector(dict(min_size=64, max_size=64, fpn_channels=16, head_width=16, roi_batch=16,
                                   backbone="vig_tiny", model_kwargs=TINY, categories=ds.categories))
    metrics = evaluate_detection(model, ds, torch.device("cpu"), show=False)  # what det train --val-ann runs
    assert 0.0 <= metrics["segm_AP"] <= 1.0


def test_undecodable_validation_masks_are_refused_at_load(coco):
    img_dir, ann, _ = coco
    data = json.load(open(ann))
    data["annotations"][0]["segmentation"] = [[1.0, 2.0]]
    json.dump(data, open(ann, "w"))
    with pytest.raises(UsageError, match="annotation 1 in .*a polygon has fewer than 3 points"):
        CocoInstances(img_dir, ann)


@pytest.mark.parametrize("segmentation, says", [([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "got a flat list"),
                                                ([[1.0, 2.0]], "fewer than 3 points")])
def test_training_polygons_are_checked_at_load(coco, segmentation, says):
    """A training file decoded its polygons only when their image came up: a flat list failed mid-epoch with a
    bare TypeError."""
    img_dir, ann, _ = coco
    data = json.load(open(ann))
    data["annotations"][0]["segmentation"] = segmentation
    json.dump(data, open(ann, "w"))
    with pytest.raises(UsageError, match=says):
        CocoInstances(img_dir, ann, train=True)


def test_a_repeated_image_id_is_refused(coco):
    img_dir, ann, _ = coco
    data = json.load(open(ann))
    data["images"].append(dict(data["images"][0]))
    json.dump(data, open(ann, "w"))
    with pytest.raises(UsageError, match="lists image id .* more than once"):
        CocoInstances(img_dir, ann, train=True)


def _seg_checkpoint(tmp_path):
    cfg = dict(SEG_PRESET, backbone="vig_tiny", model_kwargs=TINY, num_classes=3, head_channels=16, crop=64,
               scale=[64, 64], task="seg")
    path = str(tmp_path / "seg.pth")
    torch.save({"model": build_segmentor(cfg)[0].state_dict(), "config": cfg}, path)
    return path


@pytest.mark.parametrize("stride, says", [("0", "at least 1"), ("-3", "at least 1"), ("65", "larger than")])
def test_seg_eval_stride_must_be_between_1_and_the_crop(tmp_path, capsys, stride, says):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=1)
    ckpt = _seg_checkpoint(tmp_path)
    assert main(["seg", "eval", "--checkpoint", ckpt, "--images", img_dir, "--masks", ann_dir, "--device", "cpu",
                 "--stride", stride]) == 2
    err = capsys.readouterr().err
    assert f"--stride {stride}" in err and says in err


def test_eval_json_is_checked_before_evaluating(tmp_path, capsys):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=1)
    ckpt = _seg_checkpoint(tmp_path)
    for bad, says in ((str(tmp_path / "nodir" / "m.json"), "does not exist"), (str(tmp_path), "is a folder")):
        # a missing checkpoint would be the next error: --json must be named first
        for cmd in (["seg", "eval", "--checkpoint", ckpt, "--masks", ann_dir],
                    ["det", "eval", "--checkpoint", str(tmp_path / "none.pth"), "--ann", "x.json"]):
            assert main(cmd + ["--images", img_dir, "--device", "cpu", "--json", bad]) == 2
            err = capsys.readouterr().err
            assert f"--json {bad}" in err and says in err


def test_train_refuses_a_finished_run_unless_resume_or_overwrite(tmp_path, capsys):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = str(tmp_path / "run")
    assert seg_train(img_dir, ann_dir, out) == 0
    before = os.path.getmtime(os.path.join(out, "last.pth"))
    capsys.readouterr()
    assert seg_train(img_dir, ann_dir, out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(out, "last.pth")) == before
    assert seg_train(img_dir, ann_dir, out, "--resume", "auto", "--overwrite") == 2
    assert seg_train(img_dir, ann_dir, out, "--overwrite") == 0
    ckpt = torch.load(os.path.join(out, "last.pth"), weights_only=True)
    assert ckpt["iter"] == 1
    capsys.readouterr()
    # resuming with a different model: one line naming the option, not a load_state_dict traceback
    assert seg_train(img_dir, ann_dir, out, "--resume", "auto", "--head-channels", "8") == 2
    assert "--head-channels 16, this run has --head-channels 8" in capsys.readouterr().err


def test_resume_auto_refuses_run_files_without_a_checkpoint(tmp_path, capsys):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("iter,loss\n1,2.0\n")
    assert seg_train(img_dir, ann_dir, str(out), "--resume", "auto") == 2
    err = capsys.readouterr().err
    assert "metrics.csv but no last.pth" in err and "--overwrite" in err
    assert (out / "metrics.csv").read_text() == "iter,loss\n1,2.0\n" and not (out / "last.pth").exists()
    assert seg_train(img_dir, ann_dir, str(tmp_path / "fresh"), "--resume", "auto") == 0  # nothing there: starts
    assert seg_train(img_dir, ann_dir, str(out), "--overwrite") == 0


def test_out_that_is_a_file_and_the_other_tasks_checkpoint_are_refused(tmp_path, capsys, coco):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert seg_train(img_dir, ann_dir, str(afile)) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    det_ckpt = tmp_path / "det.pth"
    torch.save({"model": {}, "config": {"task": "det"}}, det_ckpt)
    assert seg_train(img_dir, ann_dir, str(tmp_path / "o"), "--resume", str(det_ckpt)) == 2
    assert "is a det checkpoint, not a segmentation one" in capsys.readouterr().err
    coco_img, coco_ann, _ = coco
    assert main(["det", "train", "--train-images", coco_img, "--train-ann", coco_ann, "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--resume", _seg_checkpoint(tmp_path)]) == 2
    assert "is a seg checkpoint, not a detection one" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("extra, says", [(["--backbone", "vig_fmnist", "--model-kwargs", "{}"], "supported: vig_base"),
                                         (["--pretrained", "missing.pth"], "checkpoint file not found"),
                                         (["--batch-size", "4"], None)])
def test_failed_startup_leaves_no_folder(tmp_path, capsys, extra, says):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = str(tmp_path / "deep" / "run")
    code = seg_train(img_dir, ann_dir, out, *extra)
    if says is None:  # seg keeps a short last batch: this one starts
        assert code == 0 and os.path.isdir(out)
        return
    assert code == 2 and says in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "deep")


def test_det_batch_larger_than_the_data_leaves_no_folder(coco, tmp_path, capsys):
    img_dir, ann, _ = coco
    out = tmp_path / "run"
    assert main(["det", "train", "--train-images", img_dir, "--train-ann", ann, "--out", str(out), "--device", "cpu",
                 "--backbone", "vig_tiny", "--model-kwargs", json.dumps(TINY), "--fpn-channels", "16",
                 "--head-width", "16", "--batch-size", "8"]) == 2
    assert "fewer than one batch of 8" in capsys.readouterr().err and not out.exists()


def test_bad_masks_and_missing_images_are_found_at_load(tmp_path):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=3)
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(os.path.join(ann_dir, "s2.png"))
    with pytest.raises(UsageError, match="s2.png: mask must be a single-channel"):
        SegFolder(img_dir, ann_dir, 3, train=True)  # the training split: before any worker reads it
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.path.join(ann_dir, "s2.png"))
    with pytest.raises(UsageError, match="s2.png: mask is 8x8"):
        SegFolder(img_dir, ann_dir, 3, train=True)
    Image.fromarray(np.full((SIZE, SIZE), 9, np.uint8)).save(os.path.join(ann_dir, "s2.png"))
    SegFolder(img_dir, ann_dir, 3, train=True)  # training labels are checked as they are read
    with pytest.raises(UsageError, match="s2.png: label 8 outside 0..2"):
        SegFolder(img_dir, ann_dir, 3, reduce_zero_label=True)  # validation labels: all checked at load


class _Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise UsageError(f"item {i} is bad")


def test_worker_errors_surface_as_the_plain_usage_error():
    loader = torch.utils.data.DataLoader(_Failing(), num_workers=1)
    with pytest.raises(UsageError) as e:
        list(plain_worker_errors(loader))
    assert str(e.value) == "item 0 is bad"


def test_pretrained_classifier_with_its_own_head_size_loads_into_the_backbone(tmp_path):
    src = timm.create_model("vig_tiny", num_classes=2, **TINY)  # a `vig train` fine-tune on two classes
    path = tmp_path / "cls.pth"
    torch.save(src.state_dict(), path)
    body, skipped = build_timm_backbone("vig_tiny", str(path), **TINY)
    assert skipped == ["head.bias", "head.weight", "norm.weight"]
    for k, v in body.model.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_a_folder_another_live_run_writes_to_is_refused(tmp_path, capsys):
    """The train lock (vig.train.run_folder) guards det/seg folders too; a finished run leaves none."""
    import socket
    import subprocess
    import sys
    from vig.train.run_folder import LOCK
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = tmp_path / "run"
    assert seg_train(img_dir, ann_dir, str(out)) == 0
    assert not (out / LOCK).exists()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(f"{socket.gethostname()} {live.pid} -\n")
        before = (out / "last.pth").stat().st_mtime_ns
        capsys.readouterr()
        for extra in (["--resume", "auto"], ["--overwrite"]):
            assert seg_train(img_dir, ann_dir, str(out), *extra) == 2
            assert f"--out {out} is in use by another vig run (pid {live.pid}" in capsys.readouterr().err
        assert (out / "last.pth").stat().st_mtime_ns == before
    finally:
        live.kill()
        live.wait()
    assert seg_train(img_dir, ann_dir, str(out), "--overwrite") == 0  # the dead process's lock is taken over
    assert not (out / LOCK).exists()


def _help_of(argv):
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main(argv + ["--help"])
    return " ".join(buf.getvalue().split())  # argparse wraps lines


def test_train_help_states_the_presets_values():
    """--help showed no defaults for det / seg (lr, epochs, sizes, crop, ...): each value stated is the preset's."""
    from vig.downstream.detection import DET_PRESET
    from vig.downstream.segmentation import SEG_PRESET, preset_lr
    import re

    def stated(text, flag):
        """The numbers after "default" in the help of `flag` (its text runs to the next option)."""
        own = re.search(rf"{flag} [A-Z_]+(?: [A-Z_]+)? (.*?)(?: --[a-z]|$)", text.split("options:")[-1]).group(1)
        return [float(x) for x in re.findall(r"default ([0-9][0-9.e+-]*)(?: ([0-9][0-9.e+-]*))?", own)[0] if x]

    det = _help_of(["det", "train"])
    for flag, key in (("--lr", "lr"), ("--weight-decay", "weight_decay"), ("--batch-size", "batch_size"),
                      ("--warmup-iters", "warmup_iters"), ("--epochs", "epochs"), ("--min-size", "min_size"),
                      ("--max-size", "max_size")):
        assert stated(det, flag) == [DET_PRESET[key]], flag
    assert stated(det, "--milestones") == list(DET_PRESET["milestones"])
    seg = _help_of(["seg", "train"])
    assert stated(seg, "--lr") == [preset_lr("vig_tiny")] and "6e-5 for small / base" in seg
    assert preset_lr("vig_small") == preset_lr("vig_base") == 6e-5
    for flag, key in (("--weight-decay", "weight_decay"), ("--batch-size", "batch_size"),
                      ("--warmup-iters", "warmup_iters"), ("--iters", "iters"), ("--crop", "crop"),
                      ("--num-classes", "num_classes")):
        assert stated(seg, flag) == [SEG_PRESET[key]], flag
    assert stated(seg, "--scale") == list(SEG_PRESET["scale"])
    assert "default yes" in seg and SEG_PRESET["reduce_zero_label"] is True
