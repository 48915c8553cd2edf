"""`vig train --compile` / `vig eval --compile`: the compiled run trains like the eager one, its checkpoints carry
the eager module's keys (no `_orig_mod.`), and they resume strictly across compiled and eager runs both ways.

The production backend is inductor, which spends about a minute per graph on a 2-core CPU; these tests swap in
aot_eager (Dynamo capture + AOTAutograd forward/backward graphs, run eagerly) through setup.COMPILE_BACKEND, wrapped
to count the graphs it is handed, so a run that silently stayed eager fails."""
import json

import pytest
import torch
from numerics import rel_rmse
from safetensors.torch import load_file

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.data.idx import FIXTURE_DIR
from vig.errors import UsageError
from vig.train import config, setup

ARGS = ["--ema-decay", "0.9", "--lr", "3e-3", "--warmup-epochs", "0", "--no-tensorboard", "--deterministic"]


@pytest.fixture
def graphs(monkeypatch):
    """The torch.compile mode of each graph handed to the backend during the test (None: the default mode)."""
    seen = []

    def counting_aot_eager(gm, example_inputs, mode=None):  # torch passes `mode` only when it is not "default"
        seen.append(mode)
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    torch._dynamo.reset()  # other tests' compiled code must not count against the recompile limit
    monkeypatch.setattr(setup, "COMPILE_BACKEND", counting_aot_eager)
    yield seen
    torch._dynamo.reset()


def _train(vig_cli, out, *extra, epochs=1):
    try:
        code, stdout, err = vig_cli(tiny_args(out, *ARGS, *extra, epochs=epochs, batch=16, limit=64))  # 4 steps
    finally:
        torch.use_deterministic_algorithms(False)
    assert code == 0, err
    return stdout


def _last(out):
    return torch.load(out / "last.pth", weights_only=True)


def test_compiled_checkpoints_match_eager_and_resume_both_ways(tmp_path, vig_cli, graphs):
    comp, eager = tmp_path / "compiled", tmp_path / "eager"
    assert "torch.compile mode default" in _train(vig_cli, comp, "--compile")
    n_compiled = len(graphs)
    assert n_compiled >= 2 and set(graphs) == {None}  # the training graph, then the eval graph (grad mode off)
    assert "torch.compile" not in _train(vig_cli, eager)
    assert len(graphs) == n_compiled  # the eager run compiled nothing

    a, b = _last(comp), _last(eager)
    for part in ("model", "model_ema"):
        assert list(a[part]) == list(b[part]), part
        assert not any("_orig_mod" in k for k in a[part])
        for k in a[part]:  # the compiled graphs compute what eager does (up to fp32 rounding, measured ~5e-6)
            assert rel_rmse(a[part][k], b[part][k]) < 1e-4, f"{part}.{k}"
    assert not torch.equal(a["model_ema"]["head.weight"], a["model"]["head.weight"])  # EMA lags, yet matches above
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert load_file(comp / "best.safetensors").keys() == load_file(eager / "best.safetensors").keys()

    # compiled run's checkpoint, eager resume (a second epoch: --reschedule stretches the 1-epoch schedule)
    out = _train(vig_cli, comp, "--resume", "--reschedule", "--no-compile", epochs=2)
    assert "resumed from" in out and "torch.compile" not in out
    assert len(graphs) == n_compiled
    torch._dynamo.reset()  # else Dynamo reuses the first run's graphs (same code, same shapes): nothing to count
    out = _train(vig_cli, eager, "--resume", "--reschedule", "--compile", epochs=2)  # eager checkpoint, compiled resume
    assert "resumed from" in out and "torch.compile mode default" in out
    assert len(graphs) > n_compiled
    for run in (comp, eager):
        ckpt = _last(run)
        assert ckpt["epoch"] == 2 and ckpt["global_step"] == 8
        assert list(ckpt["model"]) == list(a["model"])
        setup.create_model("vig_fmnist", num_classes=10).load_state_dict(ckpt["model"])  # strict


def test_eval_compile_matches_eager(tmp_path, vig_cli, graphs):
    _train(vig_cli, tmp_path / "run", "--compile")
    best = str(tmp_path / "run" / "best.safetensors")
    results = []
    for extra in ([], ["--compile", "--compile-mode", "max-autotune"]):
        before = len(graphs)
        code, _, err = vig_cli(["eval", "--model", "vig_fmnist", "--checkpoint", best, "--data", "fashion-mnist",
                                "--data-dir", str(FIXTURE_DIR), "--limit", "48", "--json", str(tmp_path / "e.json"),
                                *extra])
        assert code == 0, err
        assert graphs[before:] == (["max-autotune"] if extra else [])  # the mode reaches torch.compile
        results.append(json.loads((tmp_path / "e.json").read_text()))
    assert results[0]["top1"] == results[1]["top1"]
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)


def test_compile_mode_is_checked(tmp_path, vig_cli, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's own one-line error
        vig_cli(tiny_args(tmp_path / "r", "--compile", "--compile-mode", "fast"))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--compile-mode: invalid choice: 'fast'" in err and "max-autotune" in err
    assert not (tmp_path / "r").exists()
    good = tmp_path / "good.yaml"
    good.write_text("compile: true\ncompile-mode: reduce-overhead\n")  # config files take the new keys
    cfg = config.resolve({"output": str(tmp_path / "r")}, good)
    assert cfg.compile is True and cfg.compile_mode == "reduce-overhead"
    assert config.resolve({"output": "x", "compile": False}, good).compile is False  # a flag beats the file
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"compile": True, "compile_mode": "fast"}))
    with pytest.raises(UsageError, match="--compile-mode must be one of default, reduce-overhead, max-autotune"):
        config.resolve({"output": str(tmp_path / "r")}, bad)
