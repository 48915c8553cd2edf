import csv
import json
import os

import pytest
import torch

from conftest import TINY, make_coco
from vig.cli import main
from vig.downstream.coco import CocoInstances
from vig.downstream.detection import DET_PRESET, build_detector, train_detection

SMALL = dict(min_size=64, max_size=64, fpn_channels=32, head_width=64, roi_batch=64)
CLI_SMALL = ["--backbone", "vig_tiny", "--model-kwargs", json.dumps(TINY), "--min-size", "64", "--max-size", "64",
             "--fpn-channels", "32", "--head-width", "64", "--roi-batch", "64", "--device", "cpu", "--workers", "0"]


def test_one_training_step_with_an_empty_image_updates_backbone_and_heads(coco):
    img_dir, ann, _ = coco
    ds = CocoInstances(img_dir, ann)  # eval split: image 4 has no instance
    model, _ = build_detector(dict(SMALL, backbone="vig_tiny", model_kwargs=TINY, categories=ds.categories))
    images, targets = zip(*[ds[i] for i in (0, 3)])
    assert len(targets[1]["boxes"]) == 0
    watched = {"sfp": model.backbone.body.sfp.up2.weight, "block": model.backbone.body.model.blocks[0].mlp_norm.weight,
               "mask": model.roi_heads.mask_predictor.mask_fcn_logits.weight}
    before = {k: v.detach().clone() for k, v in watched.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = model(list(images), list(targets))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    for k, v in watched.items():
        assert not torch.equal(v, before[k]), k
    model.eval()
    with torch.no_grad():
        out = model([images[0]])[0]
    assert set(out) >= {"boxes", "labels", "scores", "masks"} and out["masks"].shape[-2:] == (64, 64)


def test_overfitting_a_few_images_makes_the_loss_fall(coco, tmp_path):
    img_dir, ann, _ = coco
    cfg = dict(DET_PRESET, **SMALL, backbone="vig_tiny", model_kwargs=TINY, train_images=img_dir, train_ann=ann,
               out_dir=str(tmp_path / "out"), batch_size=3, epochs=10, lr=2e-3, milestones=[100], warmup_iters=0,
               workers=0, device="cpu", log_every=1, task="det")
    res = train_detection(cfg)
    losses = res["losses"]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses  # measured: about 0.4-0.45
    assert {"last.pth", "metrics.csv", "curves.png"} <= set(os.listdir(tmp_path / "out"))


def test_cli_train_eval_resume_and_bad_input(tmp_path, capsys):
    img_dir, ann, _ = make_coco(str(tmp_path / "c"), n_images=4)
    out = str(tmp_path / "run")
    common = ["det", "train", "--train-images", img_dir, "--train-ann", ann, "--out", out, "--batch-size", "3",
              "--warmup-iters", "0"] + CLI_SMALL
    assert main(common + ["--epochs", "1", "--val-images", img_dir, "--val-ann", ann]) == 0
    ckpt = torch.load(os.path.join(out, "last.pth"), weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["iter"] == 1 and ckpt["config"]["lr"] == 1e-4  # the paper preset
    assert main(common + ["--epochs", "2", "--resume", "auto"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert torch.load(os.path.join(out, "last.pth"), weights_only=True)["iter"] == 2
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["iter"]) for r in rows if r["loss"]] == [1, 2] and any(r["bbox_AP"] for r in rows)

    mjson = str(tmp_path / "m.json")
    assert main(["det", "eval", "--checkpoint", os.path.join(out, "last.pth"), "--images", img_dir, "--ann", ann,
                 "--device", "cpu", "--json", mjson]) == 0
    metrics = json.load(open(mjson))
    assert 0.0 <= metrics["bbox_AP"] <= 1.0 and 0.0 <= metrics["segm_AP"] <= 1.0

    data = json.load(open(ann))
    data["categories"][1]["name"] = "circle"
    other = str(tmp_path / "other.json")
    json.dump(data, open(other, "w"))
    capsys.readouterr()
    assert main(["det", "eval", "--checkpoint", os.path.join(out, "last.pth"), "--images", img_dir, "--ann", other,
                 "--device", "cpu"]) == 2
    assert "categories of" in capsys.readouterr().err
    assert main(["det", "eval", "--checkpoint", os.path.join(out, "last.pth"), "--images", img_dir, "--ann",
                 str(tmp_path / "missing.json"), "--device", "cpu"]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    assert main(["det", "eval", "--checkpoint", str(tmp_path / "none.pth"), "--images", img_dir, "--ann", ann,
                 "--device", "cpu"]) == 2
    with pytest.raises(SystemExit):  # argparse: a required option is missing
        main(["det", "train", "--train-images", img_dir])


def test_cli_refuses_unknown_backbone_bad_kwargs_and_missing_files(coco, tmp_path, capsys):
    img_dir, ann, _ = coco
    base = ["det", "train", "--train-images", img_dir, "--train-ann", ann, "--out", str(tmp_path / "o"),
            "--device", "cpu"]
    assert main(base + ["--backbone", "nope"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err
    assert main(base + ["--model-kwargs", '{"foo": 1}']) == 2
    assert "unexpected keyword argument 'foo'" in capsys.readouterr().err
    assert main(base + ["--model-kwargs", "[1]"]) == 2
    assert main(base + ["--pretrained", str(tmp_path / "none.pth"), "--model-kwargs", json.dumps(TINY)]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert main(["det", "train", "--train-images", img_dir, "--train-ann", str(tmp_path / "x.json"), "--out",
                 str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "last.pth")


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be > 0"),  # trained nothing and named a last.pth it never wrote
    (["--max-iters", "0"], "--max-iters must be > 0"),
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--min-size", "0"], "--min-size must be > 0"),
    (["--min-size", "64", "--max-size", "10"], "--max-size 10 is below --min-size 64"),
    (["--fpn-channels", "0"], "--fpn-channels must be > 0"),
    (["--roi-batch", "0"], "--roi-batch must be > 0"),
    (["--eval-every", "0"], "--eval-every must be > 0"),
    (["--clip-grad", "-1"], "--clip-grad must be > 0"),
])
def test_bad_values_are_one_line_before_any_work(coco, tmp_path, capsys, flags, message):
    img_dir, ann, _ = coco
    out = tmp_path / "o"
    assert main(["det", "train", "--train-images", img_dir, "--train-ann", ann, "--out", str(out), "--device", "cpu",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_gpu_training_steps_under_amp(coco, tmp_path, amp):
    img_dir, ann, _ = coco
    cfg = dict(DET_PRESET, **SMALL, backbone="vig_tiny", model_kwargs=TINY, train_images=img_dir, train_ann=ann,
               out_dir=str(tmp_path / amp), batch_size=3, epochs=3, lr=1e-3, warmup_iters=0, workers=0,
               device="cuda", amp=amp, log_every=1, task="det")
    losses = train_detection(cfg)["losses"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_aspect_ratio_batches_are_single_orientation_and_complete():
    from vig.downstream.detection import AspectRatioBatchSampler
    groups = [0, 1, 0, 1, 1, 0, 0, 1, 1]
    s = AspectRatioBatchSampler(list(range(9)), groups, 2)
    batches = list(s)
    assert len(batches) == len(s) == 4
    assert [len(b) for b in batches] == [2, 2, 2, 2] and len({i for b in batches for i in b}) == 8
    assert sum(len({groups[i] for i in b}) == 1 for b in batches) >= 3  # only the leftover batch may mix


def test_resume_inside_an_epoch_finishes_only_the_unseen_batches(coco, tmp_path):
    img_dir, ann, _ = coco
    cfg = dict(DET_PRESET, **SMALL, backbone="vig_tiny", model_kwargs=TINY, train_images=img_dir, train_ann=ann,
               out_dir=str(tmp_path / "out"), batch_size=1, epochs=1, warmup_iters=0, workers=0, device="cpu",
               task="det", max_iters=2)
    assert train_detection(dict(cfg))["iters"] == 2
    ckpt = torch.load(tmp_path / "out" / "last.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["epoch_iter"], ckpt["iter"]) == (0, 2, 2)  # 3 images: the epoch is not done
    res = train_detection(dict(cfg, max_iters=None, resume="auto"))
    assert res["iters"] == 3 and len(res["losses"]) == 1
    ckpt = torch.load(tmp_path / "out" / "last.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["epoch_iter"], ckpt["iter"]) == (1, 0, 3)
    # the same run without the stop: the resumed one's last loss and weights exactly (the skipped batches are not
    # loaded, so they draw none of the flips' random numbers; loading them gave another third loss)
    whole = train_detection(dict(cfg, max_iters=None, out_dir=str(tmp_path / "whole")))
    assert whole["losses"][-1] == res["losses"][-1]
    other = torch.load(tmp_path / "whole" / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(other[k], v) for k, v in ckpt["model"].items())


def test_save_every_writes_last_pth_inside_an_epoch(coco, tmp_path, monkeypatch):
    """det saved only at each epoch's end: a crash lost up to a whole epoch (~7k iterations on COCO at batch 16)."""
    from vig.downstream import engine
    saved = []
    save = engine.atomic_torch_save
    monkeypatch.setattr(engine, "atomic_torch_save", lambda state, path: saved.append(
        (state["epoch"], state["epoch_iter"], state["iter"])) or save(state, path))
    img_dir, ann, _ = coco
    cfg = dict(DET_PRESET, **SMALL, backbone="vig_tiny", model_kwargs=TINY, train_images=img_dir, train_ann=ann,
               out_dir=str(tmp_path / "out"), batch_size=1, epochs=1, warmup_iters=0, workers=0, device="cpu",
               task="det", save_every=1)
    assert train_detection(cfg)["iters"] == 3
    assert saved == [(0, 1, 1), (0, 2, 2), (1, 0, 3)]  # 3 images: two saves inside the epoch, one at its end
