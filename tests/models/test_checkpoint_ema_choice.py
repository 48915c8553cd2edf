"""A checkpoint with both EMA and raw weights loads the EMA ones (timm's rule) and says so on stderr; a file with
only one set says nothing."""
import torch

from vig.models.checkpoint import load_checkpoint_file


def test_both_sets_load_ema_and_say_so(tmp_path, capsys):
    raw, ema = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    torch.save({"model": raw, "model_ema": ema, "epoch": 3}, tmp_path / "last.pth")
    sd = load_checkpoint_file(tmp_path / "last.pth")
    assert torch.equal(sd["w"], ema["w"])
    err = capsys.readouterr().err
    assert "'model_ema'" in err and "'model'" in err and "best.safetensors" in err
    load_checkpoint_file(tmp_path / "last.pth")  # a second read of the same file: no second note
    assert capsys.readouterr().err == ""


def test_one_set_is_silent(tmp_path, capsys):
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "a.pth")
    load_checkpoint_file(tmp_path / "a.pth")
    assert capsys.readouterr().err == ""
