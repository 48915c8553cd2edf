"""onnx_export's helpers checked without exporting (fast): the stride a dynamic-size export accepts, and the error
measure `vig export` gates the file on, against hand-computed values."""
import numpy as np
import pytest
import torch

from vig.models import onnx_export
from vig.models.cfgs import create_for_shapes


@pytest.mark.parametrize("name,stride", [("vig_tiny", 16), ("vig_h_tiny", 32)])
def test_model_stride_is_the_last_feature_maps_reduction(name, stride):
    model = create_for_shapes(name)
    assert onnx_export.model_stride(model) == stride  # ViG-H: 32, not its first stage's 4
    (dims,) = onnx_export.dynamic_shapes_for(model, dynamic_batch=False, dynamic_size=True)
    assert set(dims) == {2, 3}
    x = onnx_export.example_input(model, (64, 96), 3, dynamic_size=True)
    assert x.shape == (1, 3, 64 + stride, 96 + stride)


def test_compare_reports_max_abs_and_relative_rmse(monkeypatch):
    model = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    with torch.no_grad():
        ref = model(x).numpy().astype(np.float64)
    err = np.full_like(ref, 0.01)
    err[0, 0] = 0.05
    monkeypatch.setattr(onnx_export, "run_onnx", lambda path, inp: (ref + err).astype(np.float32))
    max_abs, rel = onnx_export.compare("unused.onnx", model, x)
    assert max_abs == pytest.approx(0.05, rel=1e-4)
    want = np.sqrt((err ** 2).mean() / (ref ** 2).mean())  # root of the mean squared error over the mean square
    assert rel == pytest.approx(want, rel=1e-4)


def test_cli_checks_a_dynamic_size_export_at_a_non_square_size_it_was_not_traced_at(tmp_path, monkeypatch):
    """The export itself is stubbed (tests/models/test_onnx_export.py runs real ones): what matters here is which
    inputs the file is traced and checked at."""
    from vig.cli import main
    traced, checked = [], []
    monkeypatch.setattr(onnx_export, "export_onnx",
                        lambda model, x, path, *a, **k: (traced.append(tuple(x.shape)), open(path, "wb").close()))
    monkeypatch.setattr(onnx_export, "non_standard_ops", lambda path: [])
    monkeypatch.setattr(onnx_export, "compare", lambda path, model, x: (checked.append(tuple(x.shape)), 0.0, 0.0)[1:])
    out = tmp_path / "m.onnx"
    assert main(["export", "vig_tiny", "--model-kwargs", "depth=1", "--img-size", "32", "--dynamic-size",
                 "--dynamic-batch", "--output", str(out)]) == 0
    assert traced == [(2, 3, 48, 48)]  # batch 2, one 16 px stride past the size
    assert checked == [(3, 3, 32, 32), (1, 3, 64, 48)]  # another batch; then 2 strides taller, 1 wider


@pytest.mark.parametrize("name,top_px", [("vig_tiny", 2048), ("vig_h_tiny", 512)])
def test_dynamic_size_is_capped_where_the_chunk_states_stay_small(name, top_px, tmp_path, capsys):
    """The exported op's chunk states grow with the square of the first stage's chunk count: a dynamic size stops at
    128 x 128 first-stage tokens (plain ViG 2048 px at stride 16; ViG-H 512 px, its stage 1 at stride 4), and
    `vig export` refuses a size whose trace or checks (two strides past it) would go beyond, writing nothing."""
    model = create_for_shapes(name)
    stride = onnx_export.model_stride(model)
    assert onnx_export.max_grid(model) * stride == top_px
    from vig.cli import main
    out = tmp_path / "m.onnx"
    argv = ["export", name, "--model-kwargs", "depth=1" if name == "vig_tiny" else "depths=[1,1,1,1]",
            "--dynamic-size", "--output", str(out), "--img-size"]
    assert main([*argv, str(top_px)]) == 2
    assert f"up to {top_px} px a side" in capsys.readouterr().err and not list(tmp_path.iterdir())
