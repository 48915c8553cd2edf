"""`vig train --pretrained RUN/best.safetensors` onto a new dataset: the model and its extra arguments come from the
file, as eval / predict / convert / det / seg take them, so the most common fine-tune needs neither flag."""
from trainkit import image_folder, tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)


def _train(data, out, *extra):
    return ["train", "--data", str(data), "--output", str(out), "--epochs", "1", "--batch-size", "8", "--img-size",
            "32", "--no-progress", "--threads", "1", "--workers", "0", "--no-tensorboard", *extra]


def _finetune(data, out, pretrained, *extra):
    return _train(data, out, "--pretrained", str(pretrained), *extra)


def test_finetune_takes_model_and_kwargs_from_our_checkpoint(vig_cli, tmp_path):
    src = tmp_path / "src"
    code, _, err = vig_cli(tiny_args(src, "--model-kwargs", "depth=2", batch=16, limit=16))
    assert code == 0, err
    data = image_folder(tmp_path / "folder", classes=2)
    out = tmp_path / "ft"
    # depth=2 is not vig_fmnist's default: without the recorded kwargs the strict load would miss blocks
    code, printed, err = vig_cli(_finetune(data, out, src / "best.safetensors"))
    assert code == 0, err
    assert "note: model vig_fmnist with {'depth': 2}, as --pretrained" in err
    assert "position table resampled from 3 x 3 to 4 x 4 tokens" in printed  # 28 px -> 32 px, 8 px patches
    assert "note: kept" not in printed  # 10 classes -> 2: a fresh head
    from vig.models.checkpoint import saved_run_info
    saved = saved_run_info(out / "best.safetensors")
    assert saved["model"] == "vig_fmnist" and saved["model_kwargs"] == {"depth": 2}
    assert saved["classes"] == ["c0", "c1"]


def test_flags_still_win_and_an_official_like_file_still_needs_the_model(vig_cli, tmp_path):
    import timm
    import torch

    import vig.models  # noqa: F401
    data = image_folder(tmp_path / "folder", classes=2)
    bare = tmp_path / "official_like.pth"
    torch.save({"model": timm.create_model("vig_fmnist").state_dict()}, bare)
    code, _, err = vig_cli(_finetune(data, tmp_path / "a", bare))
    assert code == 2 and "--model is required when --data is a folder" in err and "records its model" in err
    assert not (tmp_path / "a").exists()
    code, _, err = vig_cli(_finetune(data, tmp_path / "b", bare, "--model", "vig_fmnist"))
    assert code == 0, err
    assert "note: model" not in err


def test_a_head_kept_for_other_class_names_is_noted(vig_cli, tmp_path):
    first = image_folder(tmp_path / "first", classes=3)
    code, _, err = vig_cli(_train(first, tmp_path / "a", "--model", "vig_fmnist"))
    assert code == 0, err
    second = image_folder(tmp_path / "second", classes=3)
    for split in ("train", "val"):
        for c in range(3):
            (second / split / f"c{c}").rename(second / split / f"animal{c}")
    code, printed, err = vig_cli(_finetune(second, tmp_path / "b", tmp_path / "a" / "best.safetensors"))
    assert code == 0, err
    assert "note: kept the checkpoint's 3-class head (same count) though it was trained on other classes " \
           "(c0, c1, c2)" in printed
    assert "position table resampled" not in printed  # both at 32 px
