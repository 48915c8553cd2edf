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


def _kept_figure(monkeypatch):
    """The figure a plot function drew, kept open for inspection (nothing is written)."""
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    monkeypatch.setattr(plots._pyplot(), "close", lambda fig: None)
    return figs


@pytest.mark.parametrize("order", [("deit_tiny_patch16_224", "vig_tiny"), ("vig_tiny", "deit_tiny_patch16_224")])
def test_resolution_ratio_is_vig_over_deit_and_says_so(tmp_path, monkeypatch, order):
    figs = _kept_figure(monkeypatch)
    speed = {"vig_tiny": 80.0, "deit_tiny_patch16_224": 10.0}
    results = [{"model": m, "img_size": 512, "mode": "infer", "batch": 2, "status": "ok", "img_per_s": speed[m],
                "gmacs_fwd": 1.0, "peak_mem_mib": None} for m in order]
    plots.plot_resolution(_data(results), str(tmp_path / "r.png"), models=list(order))
    texts = [t.get_text() for t in figs[0].axes[2].texts]
    assert "8.00x" in texts and "0.12x" not in texts
    assert "ratios: ViG-T / DeiT-T throughput" in texts


def test_accuracy_plot_labels_the_paper_points_224(tmp_path, monkeypatch):
    figs = _kept_figure(monkeypatch)
    results = [{"model": "vig_tiny", "img_size": 160, "mode": "infer", "batch": 2, "status": "ok", "img_per_s": 50.0}]
    plots.plot_accuracy(_data(results), str(tmp_path / "a.png"))
    ax = figs[0].axes[0]
    assert ax.get_xlabel() == "infer throughput (img/s): measured at 160², paper points at 224²"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ViG (measured, 160²)" in labels and "ViG (paper, RTX 4090, 224²)" in labels


def test_resolution_title_states_batch_compile_and_threads(tmp_path, monkeypatch):
    """The title said only mode, dtype and device: not the batch (several asked: the largest at each size is
    drawn), the compile mode or the CPU threads that set the numbers."""
    figs = _kept_figure(monkeypatch)
    data = _data([_point("infer"), _point("infer", batch=8)])
    data["config"].update(compile=True, compile_mode="default", threads=1)
    plots.plot_resolution(data, str(tmp_path / "r.png"))
    title = figs[0]._suptitle.get_text()
    assert "largest of bs 2/8 a size" in title and "compiled (default)" in title and "1 thread" in title, title
