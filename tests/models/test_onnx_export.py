"""README (Models, Export): `torch.onnx.export(model, (x,), dynamo=True)` works on the vig models inside
`onnx_decomposition()`, vig::bigla lowered to standard ONNX ops (vig/ops/bigla/export.py); dynamic batch and, in
multiples of the stride, image size; `vig export` loads weights as predict/eval do, checks the file with
onnxruntime and writes it atomically. Tolerance: fp32 relative RMSE <= 1e-5 against the PyTorch model.
Small configs (depth 1-2, 32-64 px) keep the file well under a minute on two cores."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

import vig  # noqa: F401  (registers the models)
from vig.cli import main
from vig.models import onnx_export
from vig.models.checkpoint import save_safetensors_atomic
from vig.ops.bigla.export import bigla_export, onnx_decomposition
from vig.ops.bigla.gates import log_decays
from vig.ops.bigla.naive import bigla_naive

REL_RMSE = 1e-5


def rel_rmse(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    return float(np.sqrt(((out - ref) ** 2).mean() / (ref ** 2).mean()))


def run_ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def custom_domain_ops(path):
    return {(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node if n.domain not in ("", "ai.onnx")}


@pytest.mark.parametrize("T", (5, 33, 100))
def test_export_form_matches_the_oracle(T):
    # the symbolic-safe form (fixed chunks, padding, pairwise chunk decays) against the float64 oracle, with strong
    # gates (x * 30) so that decays span many orders of magnitude across chunks
    torch.manual_seed(T)
    B, H, K, V = 2, 3, 16, 32
    q, k, xf, xb = (torch.randn(B, T, H, K, dtype=torch.float64) for _ in range(4))
    v = torch.randn(B, T, H, V, dtype=torch.float64)
    ref = bigla_naive(q, k, v, log_decays(30 * xf, 16), log_decays(30 * xb, 16), K ** -0.5)
    assert rel_rmse(bigla_export(q, k, v, 30 * xf, 30 * xb, K ** -0.5, 16), ref) < 1e-12
    o32 = bigla_export(q.float(), k.float(), v.float(), 30 * xf.float(), 30 * xb.float(), K ** -0.5, 16)
    assert o32.dtype == torch.float32 and rel_rmse(o32, ref) < 1e-6


def test_torch_export_still_keeps_the_op():
    # the decomposition is for the ONNX exporter: torch.export's default lowering keeps the fused op's one call
    model = timm.create_model("vig_tiny", img_size=32, depth=1).eval()
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),)).run_decompositions()
    assert [str(n.target) for n in program.graph.nodes].count("vig.bigla.default") == 1


def test_torch_export_with_a_dynamic_length_keeps_the_whole_range():
    # the decomposition is never left in torch's table: symbolic-size fake tracing reads that table before the op's
    # fake impl, and bigla_export's chunk-count guards then narrowed T (a constraint error here, and models exported
    # with a dynamic size failed at run time at another chunk count)
    from torch._decomp import decomposition_table
    assert torch.ops.vig.bigla.default not in decomposition_table

    class Op(torch.nn.Module):
        def forward(self, q, k, v, gf, gb):
            return torch.ops.vig.bigla(q, k, v, gf, gb, 0.25, "torch", 16.0)

    q, k, gf, gb = torch.randn(4, 1, 40, 2, 16)
    v = torch.randn(1, 40, 2, 32)
    T = torch.export.Dim("T", min=1, max=4096)
    program = torch.export.export(Op(), (q, k, v, gf, gb), dynamic_shapes=tuple({1: T} for _ in range(5)))
    for t in (1, 20, 33, 100):  # one chunk, and several, on both sides of the traced 2
        xs = [x[:, :t].contiguous() for x in (q, k, v, gf, gb)] if t <= 40 else [
            torch.randn(1, t, 2, d) for d in (16, 16, 32, 16, 16)]
        assert torch.allclose(program.module()(*xs), Op()(*xs), atol=1e-6)


def test_vig_h_plain_torch_onnx_export(tmp_path):
    # the user's call inside onnx_decomposition; 64 px makes stage 1 256 tokens: 8 chunks, so the inter-chunk states
    # are exercised
    torch.manual_seed(0)
    model = timm.create_model("vig_h_tiny", img_size=64, depths=(1, 1, 1, 1)).eval()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "vig_h.onnx"
    with onnx_decomposition():
        torch.onnx.export(model, (x,), dynamo=True, verbose=False).save(str(path))
    from torch._decomp import decomposition_table
    assert torch.ops.vig.bigla.default not in decomposition_table  # removed on exit
    assert not custom_domain_ops(path)
    with torch.no_grad():
        assert rel_rmse(run_ort(path, x), model(x)) <= REL_RMSE


def test_plain_vig_dynamic_batch_and_size(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=48, depth=1).eval()
    path = tmp_path / "vig.onnx"
    x = onnx_export.example_input(model, (48, 48), 3, dynamic_batch=True, dynamic_size=True)
    onnx_export.export_onnx(model, x, str(path), dynamic_batch=True, dynamic_size=True)
    assert not custom_domain_ops(path)
    # the native size (position table used as is), another batch, and a non-square size of 42 tokens (2 chunks)
    for shape in ((2, 3, 48, 48), (3, 3, 48, 48), (1, 3, 112, 96)):
        xs = torch.randn(shape)
        with torch.no_grad():
            ref = model(xs)
        out = run_ort(path, xs)
        assert out.shape == tuple(ref.shape) and rel_rmse(out, ref) <= REL_RMSE, shape


def test_cli_exports_a_checkpoint_and_checks_it(tmp_path, capsys):
    # a `vig convert`-style file records its model and model kwargs: the CLI must build and load exactly that
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=32, depth=1, num_classes=10).eval()
    ckpt = tmp_path / "w.safetensors"
    save_safetensors_atomic(model.state_dict(), ckpt, {"model": "vig_tiny", "model_kwargs": '{"depth": 1}',
                                                       "img_size": "32"})
    out = tmp_path / "w.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(out), "--dynamic-batch"]) == 0
    printed = capsys.readouterr().out
    assert f"exported vig_tiny at 32x32 -> {out}" in printed and "dynamic: batch" in printed
    assert "onnxruntime vs PyTorch, input [3, 3, 32, 32]: max abs diff" in printed
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert rel_rmse(run_ort(out, x), model(x)) <= REL_RMSE  # the checkpoint's weights, not a fresh init
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.onnx", "w.safetensors"]  # no temp file left


@pytest.mark.parametrize("argv, message", [
    (["vig_tinyy"], "unknown model 'vig_tinyy'; did you mean vig_tiny"),
    (["vig_tiny", "--checkpoint", "{tmp}/none.pth"], "checkpoint file not found: {tmp}/none.pth"),
    (["vig_tiny", "--img-size", "0"], "--img-size must be positive, got 0"),
    (["vig_tiny", "--img-size", "8"], "vig_tiny does not run at 8x8"),  # the stem's grid would be empty
    (["vig_tiny", "--img-size", "40", "--dynamic-size"],
     "--dynamic-size exports sizes that are multiples of vig_tiny's stride 16; --img-size 40 is not one"),
    (["vig_tiny", "--opset", "11"], "--opset must be at least 18"),
    (["vig_tiny", "--output", "{tmp}/model.onnx.bin"], "--output must end with .onnx"),
    (["vig_tiny", "--output", "{tmp}/no/such/folder/m.onnx"],
     "--output {tmp}/no/such/folder/m.onnx: folder {tmp}/no/such/folder does not exist"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "m.onnx")]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert f"vig export: error: {message.replace('{tmp}', str(tmp_path))}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_keeps_an_existing_file_without_overwrite(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    assert main(["export", "vig_tiny", "--img-size", "32", "--output", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"previous"


def test_cli_failed_export_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    # a crash after part of the file is written (disk full, a bug in the exporter) must leave nothing behind
    def half_written(model, x, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x08\x07partial")
        raise RuntimeError("simulated failure while writing")

    monkeypatch.setattr(onnx_export, "export_onnx", half_written)
    out = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError, match="simulated"):
        main(["export", "vig_tiny", "--model-kwargs", "depth=1", "--img-size", "32", "--output", str(out)])
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_file_that_disagrees_with_pytorch(tmp_path, capsys, monkeypatch):
    # the check runs on the temp file before it is put in place: a wrong graph never appears at --output
    monkeypatch.setattr(onnx_export, "export_onnx", lambda model, x, path, *a, **k: open(path, "wb").close())
    monkeypatch.setattr(onnx_export, "non_standard_ops", lambda path: [])
    monkeypatch.setattr(onnx_export, "compare", lambda path, model, x: (0.5, 0.1))
    out = tmp_path / "m.onnx"
    assert main(["export", "vig_tiny", "--model-kwargs", "depth=1", "--img-size", "32", "--output", str(out)]) == 2
    assert "onnxruntime disagrees with PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_deps_are_not_imported_with_vig():
    import subprocess
    import sys
    code = ("import sys, vig, vig.cli; vig.cli.build_parser(); print("
            "sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout
    assert out.strip() == "[]"
