"""Plots draw whatever a run measured: a --train-only run, --no-flops, or points all skipped by --time-limit
made plot_resolution log-scale an empty axis (matplotlib: "Data cannot be log-scaled")."""
import pytest

from vig.bench import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _data(results, device="cpu"):
    return {"results": results, "env": {"device": device, "torch": "x"}, "config": {"dtype": "fp32"}}


def _point(mode, status="ok", flops=True, **extra):
    p = {"model": "vig_tiny", "img_size": 64, "mode": mode, "batch": 2, "status": status, **extra}
    if flops:
        p.update(gmacs_fwd=0.1, gmacs_fwd_bigla=0.007)
    if status == "ok":
        p.update(img_per_s=12.5, peak_mem_mib=None)
    return p


@pytest.mark.parametrize("results", [
    [_point("train")],                                    # --train-only
    [_point("train", flops=False)],                       # --train-only --no-flops
    [_point("infer", flops=False)],                       # --no-flops
    [_point("infer", status="skipped", flops=False, reason="time limit")],  # --time-limit 0
    [_point("train", status="skipped", reason="time limit")],
    [],
], ids=["train-only", "train-only-no-flops", "no-flops", "all-skipped", "train-skipped", "empty"])
def test_plots_never_crash_on_missing_data(tmp_path, results):
    paths = plots.plot_all(_data(results), str(tmp_path), "t")
    for path in paths:
        assert open(path, "rb").read()[:8] == PNG


def test_train_only_plots_the_train_points(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(plots, "_series", lambda results, model, mode: seen.append(mode) or
                        [p for p in results if p["mode"] == mode])
    plots.plot_resolution(_data([_point("train")]), str(tmp_path / "r.png"))
    assert set(seen) == {"train"}
    assert plots.default_mode([_point("train"), _point("infer")]) == "infer"
