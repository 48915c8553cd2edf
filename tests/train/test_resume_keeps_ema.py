"""A run with EMA, stopped mid-epoch and resumed, ends with the EMA weights of the uninterrupted run: the resume
restores the checkpoint's EMA (model_ema), not a copy of its raw weights. The sigkill resume test runs without EMA
(Fashion-MNIST's default recipe), so it cannot tell the two apart."""
import torch

from trainkit import folder_args, image_folder, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.train import checkpointing as ck

# a fixed 0.9 decay (timm copies the weights at steps 0 and 1, then averages): by step 4 the EMA is away from the
# raw weights. 2 epochs of 3 steps, a checkpoint after every step
ARGS = ["--warmup-epochs", "0", "--lr", "1e-3", "--ema-decay", "0.9", "--no-ema-warmup", "--ckpt-every-steps", "1",
        "--deterministic"]


def _run(vig_cli, args):
    try:
        return vig_cli(args)
    finally:
        torch.use_deterministic_algorithms(False)


def test_resumed_ema_matches_the_uninterrupted_run(vig_cli, tmp_path, monkeypatch):  # noqa: F811
    data = image_folder(tmp_path / "ds")
    code, _, err = _run(vig_cli, folder_args(data, tmp_path / "ref", *ARGS, epochs=2))
    assert code == 0, err

    real_save, saves = ck.atomic_torch_save, []

    def interrupted_at_the_fifth_save(obj, path):
        saves.append(obj["global_step"])
        if len(saves) == 5:  # steps 1, 2, 3 (end of epoch 1), 4, then 5
            raise KeyboardInterrupt
        real_save(obj, path)
    monkeypatch.setattr(ck, "atomic_torch_save", interrupted_at_the_fifth_save)
    cut = tmp_path / "cut"
    code, _, err = _run(vig_cli, folder_args(data, cut, *ARGS, epochs=2))
    assert code == 130, err
    monkeypatch.undo()
    at_stop = torch.load(cut / ck.LAST, weights_only=True)
    assert at_stop["global_step"] == 4
    assert any(not torch.equal(at_stop["model"][k], at_stop["model_ema"][k]) for k in at_stop["model"])
    code, out, err = _run(vig_cli, folder_args(data, cut, *ARGS, "--resume", epochs=2))
    assert code == 0 and "resumed from" in out, err

    ref, got = (torch.load(d / ck.LAST, weights_only=True) for d in (tmp_path / "ref", cut))
    assert got["global_step"] == ref["global_step"] == 6
    for key in ("model", "model_ema"):
        for k, v in ref[key].items():
            torch.testing.assert_close(got[key][k], v, rtol=1e-6, atol=1e-7, msg=f"{key} {k}")
