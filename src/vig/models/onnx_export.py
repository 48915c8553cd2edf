"""ONNX export of a (CPU, eval) model with torch.onnx.export(dynamo=True), and a check of the file with onnxruntime.

`torch.onnx.export(model, (x,), dynamo=True)` works for every vig model inside
`vig.ops.bigla.export.onnx_decomposition()`, where vig::bigla reaches the exporter as standard ops; export_onnx
enters it. This module adds what a deployment needs on top: dynamic batch / image size and the numerical check that
`vig export` runs.

Dynamic image size: H and W become multiples of the model's stride (16 plain ViG, 32 ViG-H). Plain ViG resamples its
position table only when the token grid differs from the table's; tracing at the table's grid would bake that
shortcut in (torch.export keeps it as a runtime assert, which ONNX drops), so the example input is one stride
larger per side. The resample to an equal grid is the identity (bicubic weights 0/1/0/0), so the native size stays
exact. onnx, onnxscript and onnxruntime are imported here only, never at `import vig`.
"""
import numpy as np
import torch

STANDARD_DOMAINS = ("", "ai.onnx")
# A dynamic-size export's largest first-stage token grid per side: the exported op's loop-free chunk states cost
# O(N^2) in the chunks (ops/bigla/export.py), ~100 MB a sequence at 128 x 128 tokens (512 chunks), 5 GB at 256 x 256
MAX_TOKEN_GRID = 128


def max_grid(model):
    """The largest final feature grid per side a dynamic-size export accepts: its first stage (stride 4 in ViG-H, the
    patch stride in plain ViG) at MAX_TOKEN_GRID tokens a side. Plain ViG 128 (2048 px), ViG-H 16 (512 px)."""
    info = getattr(model, "feature_info", None) or []
    first = min((int(f["reduction"]) for f in info), default=1)
    return max(2, MAX_TOKEN_GRID * first // model_stride(model))


def model_stride(model):
    """The total downsampling of the model's last feature map (input sizes a dynamic-size export accepts are
    multiples of it)."""
    info = getattr(model, "feature_info", None) or []
    return max((int(f["reduction"]) for f in info), default=1)


def example_input(model, img_size, in_chans, dynamic_batch=False, dynamic_size=False):
    """The tracing input: batch 2 for a dynamic batch (batch 1 would be specialised), one stride past img_size per
    side for a dynamic size (see the module note)."""
    h, w = img_size
    if dynamic_size:
        stride = model_stride(model)
        h, w = h + stride, w + stride
    return torch.randn(2 if dynamic_batch else 1, in_chans, h, w)


def dynamic_shapes_for(model, dynamic_batch, dynamic_size):
    if not (dynamic_batch or dynamic_size):
        return None
    Dim = torch.export.Dim
    dims = {0: Dim("batch", min=1, max=4096)} if dynamic_batch else {}
    if dynamic_size:
        stride = model_stride(model)
        dims[2] = stride * Dim("grid_h", min=2, max=max_grid(model))
        dims[3] = stride * Dim("grid_w", min=2, max=max_grid(model))
    return (dims,)


def export_onnx(model, x, path, dynamic_batch=False, dynamic_size=False, opset=None):
    """Export `model` (eval, CPU) traced at `x` to `path` (one self-contained file); returns the ONNXProgram."""
    from vig.ops.bigla.export import onnx_decomposition
    with onnx_decomposition():
        program = torch.onnx.export(model, (x,), dynamo=True, input_names=["input"], output_names=["output"],
                                    dynamic_shapes=dynamic_shapes_for(model, dynamic_batch, dynamic_size),
                                    opset_version=opset, verbose=False)
    program.save(path, external_data=False)
    return program


def non_standard_ops(path):
    """(domain, op) of every node outside the standard ONNX domains: a runtime without custom ops needs none."""
    import onnx
    graph = onnx.load(path).graph
    return sorted({(n.domain, n.op_type) for n in graph.node if n.domain not in STANDARD_DOMAINS})


def opset_of(path):
    """The file's standard-domain opset version."""
    import onnx
    return next(o.version for o in onnx.load(path).opset_import if o.domain in STANDARD_DOMAINS)


def run_onnx(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def compare(path, model, x):
    """(max abs difference, relative RMSE) of the ONNX file's output against the model's on input x."""
    with torch.no_grad():
        ref = model(x).float().numpy()
    out = run_onnx(path, x)
    if out.shape != ref.shape:
        raise ValueError(f"the ONNX model returned shape {out.shape}, PyTorch {ref.shape}")
    err = (out - ref).astype(np.float64)
    rel = float(np.sqrt((err ** 2).mean() / max((ref.astype(np.float64) ** 2).mean(), 1e-30)))
    return float(np.abs(err).max()), rel
