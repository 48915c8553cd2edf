import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, make_seg
from vig.cli import main
from vig.downstream.ade import IGNORE, SegFolder, SegMetric
from vig.downstream.segmentation import SEG_PRESET, build_segmentor, evaluate_segmentation, train_segmentation
from vig.downstream.upernet import slide_inference
from vig.errors import UsageError

SMALL = dict(scale=[64, 64], crop=64, head_channels=32, aux_channels=16)


def test_loader_reduce_zero_label_crops_and_pads(segdata):
    img_dir, ann_dir = segdata
    raw = np.array(Image.open(os.path.join(ann_dir, "s0.png")))
    ev = SegFolder(img_dir, ann_dir, 3, reduce_zero_label=True, scale=(64, 64), crop=64)
    img, lab = ev[0]
    assert img.shape == (3, 64, 64) and lab.shape == (64, 64)
    assert torch.equal(lab, torch.from_numpy(np.where(raw == 0, IGNORE, raw.astype(np.int64) - 1)))
    tr = SegFolder(img_dir, ann_dir, 3, train=True, reduce_zero_label=True, scale=(32, 32), crop=64)
    img, lab = tr[1]  # rescaled to at most 64 px, then padded to the 64 crop with the ignore label
    assert img.shape == (3, 64, 64) and lab.shape == (64, 64)
    assert set(lab.unique().tolist()) <= {0, 1, 2, IGNORE} and (lab == IGNORE).any()
    with pytest.raises(UsageError, match="label 2 outside 0..1"):
        SegFolder(img_dir, ann_dir, 2, reduce_zero_label=True)[0]


def test_bad_masks_give_clear_errors(segdata):
    img_dir, ann_dir = segdata
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(os.path.join(ann_dir, "s1.png"))
    with pytest.raises(UsageError, match="mask is 64x32 but its image is 64x64"):
        SegFolder(img_dir, ann_dir, 3)[1]
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(os.path.join(ann_dir, "s1.png"))
    with pytest.raises(UsageError, match="single-channel index PNG"):
        SegFolder(img_dir, ann_dir, 3)[1]
    os.remove(os.path.join(ann_dir, "s2.png"))
    with pytest.raises(UsageError, match="no annotation mask for s2.jpg"):
        SegFolder(img_dir, ann_dir, 3)
    with pytest.raises(UsageError, match="image folder not found"):
        SegFolder(img_dir + "_nope", ann_dir, 3)


def test_metric_known_values():
    m = SegMetric(3)
    m.update(torch.tensor([0, 1, 1, 1, 2]), torch.tensor([0, 0, 1, 1, IGNORE]))
    r = m.compute()
    assert r["IoU"][:2] == pytest.approx([1 / 2, 2 / 3]) and r["IoU"][2] is None  # class 2 never occurs
    assert r["mIoU"] == pytest.approx(7 / 12) and r["aAcc"] == pytest.approx(3 / 4)
    p = SegMetric(3)
    t = torch.tensor([[0, 1], [2, IGNORE]])
    p.update(t.clamp(max=2), t)
    assert p.compute()["mIoU"] == 1.0 and p.compute()["aAcc"] == 1.0


class ColourOracle(torch.nn.Module):
    """Pointwise classifier: the nearest class colour of the test palette (exact on the drawn stripes)."""

    def __init__(self, ds):
        super().__init__()
        pal = torch.tensor([(220, 40, 40), (40, 200, 60), (40, 60, 220)], dtype=torch.float32) / 255
        self.register_buffer("pal", ((pal - ds.mean.view(1, 3)) / ds.std.view(1, 3)).view(3, 3, 1, 1))

    def forward(self, x):
        return -((x[:, None] - self.pal[None]) ** 2).sum(2)


def test_perfect_prediction_gives_miou_1_and_sliding_equals_whole(segdata):
    img_dir, ann_dir = segdata
    ds = SegFolder(img_dir, ann_dir, 3, reduce_zero_label=True, scale=(64, 64), crop=64)
    oracle = ColourOracle(ds)
    m = evaluate_segmentation(oracle, ds, torch.device("cpu"), crop=32, stride=20)  # 3x3 overlapping windows
    assert m["mIoU"] == 1.0 and m["aAcc"] == 1.0
    x = torch.randn(1, 3, 70, 90)
    assert torch.allclose(slide_inference(oracle, x, 3, crop=32, stride=21), oracle(x), atol=1e-5)


def test_upernet_overfits_and_sliding_inference_runs(segdata, tmp_path):
    img_dir, ann_dir = segdata
    cfg = dict(SEG_PRESET, **SMALL, backbone="vig_tiny", model_kwargs=TINY, num_classes=3, train_images=img_dir,
               train_masks=ann_dir, out_dir=str(tmp_path / "out"), batch_size=2, iters=12, lr=2e-3, warmup_iters=0,
               workers=0, device="cpu", log_every=1, task="seg")
    res = train_segmentation(cfg)
    losses = res["losses"]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.75 * losses[0], losses
    assert {"last.pth", "metrics.csv", "curves.png"} <= set(os.listdir(tmp_path / "out"))
    model, _ = build_segmentor(cfg)
    model.eval()
    with torch.no_grad():
        assert slide_inference(model, torch.randn(1, 3, 80, 100), 3, crop=64, stride=32).shape == (1, 3, 80, 100)


def test_cli_train_eval_resume_and_bad_input(tmp_path, capsys):
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = str(tmp_path / "run")
    common = ["seg", "train", "--backbone", "vig_tiny", "--model-kwargs", json.dumps(TINY), "--train-images",
              img_dir, "--train-masks", ann_dir, "--num-classes", "3", "--out", out, "--batch-size", "2",
              "--crop", "64", "--scale", "64", "64", "--head-channels", "32", "--device", "cpu", "--workers", "0"]
    assert main(common + ["--iters", "2", "--val-images", img_dir, "--val-masks", ann_dir, "--grad-checkpointing"]) == 0
    ckpt = torch.load(os.path.join(out, "last.pth"), weights_only=True)
    assert ckpt["iter"] == 2 and ckpt["config"]["lr"] == 1.2e-4 and ckpt["config"]["weight_decay"] == 0.01
    assert main(common + ["--iters", "3", "--resume", "auto"]) == 0
    assert "resumed from" in capsys.readouterr().out
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["iter"]) for r in rows if r["loss"]] == [2, 3] and any(r["mIoU"] for r in rows)
    mjson = str(tmp_path / "m.json")
    assert main(["seg", "eval", "--checkpoint", os.path.join(out, "last.pth"), "--images", img_dir, "--masks",
                 ann_dir, "--device", "cpu", "--json", mjson]) == 0
    m = json.load(open(mjson))
    assert 0 <= m["mIoU"] <= 1 and 0 <= m["aAcc"] <= 1 and len(m["IoU"]) == 3
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(os.path.join(ann_dir, "s0.png"))
    capsys.readouterr()
    assert main(["seg", "eval", "--checkpoint", os.path.join(out, "last.pth"), "--images", img_dir, "--masks",
                 ann_dir, "--device", "cpu"]) == 2
    assert "mask is 10x10" in capsys.readouterr().err
    assert main(["seg", "train", "--train-images", img_dir, "--train-masks", ann_dir, "--out", out,
                 "--val-images", img_dir]) == 2


def test_training_crops_keep_image_and_label_aligned(segdata):
    img_dir, ann_dir = segdata
    ds = SegFolder(img_dir, ann_dir, 3, train=True, reduce_zero_label=True, scale=(96, 96), crop=64)
    ds.jitter = lambda im: im  # colours must stay exact for the check
    oracle = ColourOracle(ds)
    torch.manual_seed(0)
    for i in range(len(ds)):
        img, lab = ds[i]
        pred = oracle(img[None]).argmax(1)[0]
        keep = lab != IGNORE
        assert (pred[keep] == lab[keep]).float().mean() > 0.95  # only resampled stripe edges may differ


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training_steps_under_bf16(segdata, tmp_path):
    img_dir, ann_dir = segdata
    cfg = dict(SEG_PRESET, **SMALL, backbone="vig_tiny", model_kwargs=TINY, num_classes=3, train_images=img_dir,
               train_masks=ann_dir, val_images=img_dir, val_masks=ann_dir, out_dir=str(tmp_path / "out"),
               batch_size=2, iters=3, lr=1e-3, warmup_iters=0, workers=0, device="cuda", amp="bf16", task="seg")
    losses = train_segmentation(cfg)["losses"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_resume_keeps_the_runs_settings_and_flags_given_now_replace_them(tmp_path, capsys):
    """--resume auto with only the data and --iters: the run goes on at its own crop, scale, head, lr and warmup
    (the paper preset's 512 crop, 2048 x 512 scale and 1500 warmup came back before, silently), and a flag given now
    replaces its saved value, said in one line."""
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = str(tmp_path / "run")
    data = ["seg", "train", "--train-images", img_dir, "--train-masks", ann_dir, "--out", out, "--device", "cpu",
            "--workers", "0"]
    first = ["--backbone", "vig_tiny", "--model-kwargs", json.dumps(TINY), "--num-classes", "3", "--batch-size", "2",
             "--crop", "64", "--scale", "64", "64", "--head-channels", "32", "--lr", "3e-4", "--warmup-iters", "1",
             "--log-every", "1"]
    assert main(data + first + ["--iters", "2"]) == 0
    saved = torch.load(os.path.join(out, "last.pth"), weights_only=True)["config"]
    capsys.readouterr()
    assert main(data + ["--iters", "3", "--resume", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "resuming with the run's saved settings; replaced now: --iters 2 -> 3" in printed
    cfg = torch.load(os.path.join(out, "last.pth"), weights_only=True)["config"]
    for key in ("crop", "scale", "head_channels", "lr", "warmup_iters", "batch_size", "num_classes", "model_kwargs",
                "log_every"):
        assert cfg[key] == saved[key], key
    assert cfg["iters"] == 3


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--iters", "0"], "--iters must be > 0"),
    (["--crop", "0"], "--crop must be > 0"),
    (["--head-channels", "0"], "--head-channels must be > 0"),
    (["--save-every", "0"], "--save-every must be > 0"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--layer-decay", "1.5"], "--layer-decay must be in (0, 1]"),
    (["--drop-path", "1.5"], "--drop-path must be in [0, 1)"),
    (["--scale", "0", "0"], "--scale sizes must be >= 1"),
    (["--batch-size", "1"], "UperNet's BatchNorm needs at least 2"),
])
def test_bad_values_are_one_line_before_any_work(tmp_path, capsys, flags, message):
    """They failed deep inside torch (batch 0, a zero-width conv, BatchNorm at one image) or ran quietly wrong."""
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = tmp_path / "run"
    assert main(["seg", "train", "--train-images", img_dir, "--train-masks", ann_dir, "--out", str(out), "--device",
                 "cpu", "--workers", "0", "--crop", "64", "--scale", "64", "64", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_folder_without_a_checkpoint_asks_only_for_overwrite(tmp_path, capsys):
    """A run that stopped before its first checkpoint leaves metrics.csv: the message sent the user to --resume auto,
    whose own message sent them back."""
    img_dir, ann_dir = make_seg(str(tmp_path / "s"), n=2)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("iter,loss\n")
    assert main(["seg", "train", "--train-images", img_dir, "--train-masks", ann_dir, "--out", str(out), "--device",
                 "cpu"]) == 2
    err = capsys.readouterr().err
    assert "stopped before its first checkpoint" in err and "--overwrite" in err and "--resume" not in err
