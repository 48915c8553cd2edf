"""`vig export`: a model (with its checkpoint, loaded as `vig predict` / `vig eval` load it) to one ONNX file, checked
with onnxruntime against PyTorch before it is put in place, so a failed export or check leaves no file."""
import os
import sys

import torch

from vig.atomic import atomic_write_path, check_output_file
from vig.errors import UsageError
from vig.models.checkpoint import RAW_WEIGHTS_HELP
from vig.models.model_kwargs import HELP as KWARGS_HELP, METAVAR as KWARGS_METAVAR

MIN_OPSET = 18  # torch's dynamo exporter writes opset 18 and up
# fp32 agreement the file must reach on a random input (the BiGLA rewrite and ONNX Runtime's kernels round
# differently; measured <= 8e-7 at 224 and 1.3e-6 for a 64 px ViG-H): a looser bound hides a wrong graph
MAX_REL_RMSE = 1e-5


def add_commands(subparsers):
    p = subparsers.add_parser("export", help="export a model to ONNX (checked with onnxruntime)",
                              description="Export a model to ONNX with torch.onnx.export(dynamo=True), then run the "
                                          "file with onnxruntime on a random input and compare it with PyTorch.")
    p.add_argument("model", nargs="?", default=None,
                   help="model name, e.g. vig_tiny (default: the one a `vig train` / `vig convert` --checkpoint "
                        "records)")
    p.add_argument("--checkpoint", default=None, help="weights (.pth/.safetensors); without it weights are random")
    p.add_argument("--img-size", type=int, default=None,
                   help="input resolution (default: the training size stored in --checkpoint, else the model's)")
    p.add_argument("--output", default=None, help="output .onnx file (default: MODEL.onnx)")
    p.add_argument("--opset", type=int, default=None, help=f"ONNX opset (>= {MIN_OPSET}; default: torch's)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size at run time")
    p.add_argument("--dynamic-size", action="store_true",
                   help="any height and width that are multiples of the model's stride (16 ViG, 32 ViG-H)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--raw-weights", action="store_true", help=RAW_WEIGHTS_HELP)
    p.add_argument("--model-kwargs", nargs="+", default=None, metavar=KWARGS_METAVAR, help=KWARGS_HELP)
    p.set_defaults(func=cmd_export)


def _check_options(args):
    if args.img_size is not None and args.img_size < 1:
        raise UsageError(f"--img-size must be positive, got {args.img_size}")
    if args.opset is not None and args.opset < MIN_OPSET:
        raise UsageError(f"--opset must be at least {MIN_OPSET} (torch.onnx's dynamo exporter), got {args.opset}")
    if args.output is not None and not args.output.endswith(".onnx"):
        raise UsageError(f"--output must end with .onnx, got {args.output}")
    try:
        import onnx
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UsageError(f"vig export needs onnx, onnxscript and onnxruntime ({e}); "
                         "install them with: pip install 'vig[export]'") from None
    newest = onnx.defs.onnx_opset_version()
    if args.opset is not None and args.opset > newest:
        raise UsageError(f"--opset {args.opset} is newer than this onnx package knows (up to {newest})")


def _check_output(path, overwrite):
    check_output_file(path, "--output")
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"output {path} exists; pass --overwrite to replace it")
    return path


def load_model(args):
    """The model and its input size, built and loaded as `vig predict` does (no head required: a backbone exports)."""
    from vig.models.cfgs import model_in_chans
    from vig.models.commands import build_for_checkpoint
    from vig.models.model_kwargs import parse_model_kwargs

    def given_kwargs(kwargs):
        if args.model_kwargs:
            kwargs.update(parse_model_kwargs(args.model_kwargs))

    _, name, model, size = build_for_checkpoint(args.model, args.checkpoint, args.raw_weights, args.img_size,
                                                flag="MODEL", adjust_kwargs=given_kwargs)
    return name, model.eval(), size, model_in_chans(model)


def cmd_export(args):
    from vig.models import onnx_export
    _check_options(args)
    if args.output:  # a typo in the path is said before the model is built
        _check_output(args.output, args.overwrite)
    name, model, size, in_chans = load_model(args)
    output = args.output or _check_output(f"{name.split('.')[0]}.onnx", args.overwrite)
    stride = onnx_export.model_stride(model)
    if args.dynamic_size and (size[0] % stride or size[1] % stride):
        raise UsageError(f"--dynamic-size exports sizes that are multiples of {name}'s stride {stride}; "
                         f"--img-size {size[0]} is not one")
    top = onnx_export.max_grid(model) * stride
    if args.dynamic_size and max(size) + 2 * stride > top:  # the trace and the checks run up to 2 strides past it
        raise UsageError(f"--dynamic-size exports {name} up to {top} px a side (the exported op's cost grows with "
                         f"the square of the chunk count); --img-size {max(size)} leaves no room: at most "
                         f"{top - 2 * stride}")
    x = onnx_export.example_input(model, size, in_chans, args.dynamic_batch, args.dynamic_size)
    checks = [torch.randn(3 if args.dynamic_batch else 1, in_chans, *size)]
    if args.dynamic_size:  # a second, non-square size the trace never saw
        checks.append(torch.randn(1, in_chans, size[0] + 2 * stride, size[1] + stride))
    try:
        with torch.no_grad():
            model(checks[0])
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"{name} does not run at {size[0]}x{size[1]}: {str(e).splitlines()[0]}") from None
    if args.checkpoint is None:
        print(f"warning: no --checkpoint given, {name} has random weights", file=sys.stderr)
    results = []

    def write_and_check(tmp):
        # checked before os.replace: a file that fails the comparison never appears at --output
        onnx_export.export_onnx(model, x, tmp, args.dynamic_batch, args.dynamic_size, args.opset)
        got = onnx_export.opset_of(tmp) if args.opset is not None else None
        if got != args.opset:  # torch logs a failed version conversion and goes on
            raise UsageError(f"torch.onnx could not convert the graph to opset {args.opset} (it wrote {got}); "
                             "nothing written")
        custom = onnx_export.non_standard_ops(tmp)
        if custom:
            raise UsageError(f"the exported graph has non-standard ops {custom}; nothing written")
        for c in checks:
            results.append((tuple(c.shape), *onnx_export.compare(tmp, model, c)))
        bad = [r for r in results if not r[2] <= MAX_REL_RMSE]
        if bad:
            raise UsageError(f"onnxruntime disagrees with PyTorch (input {bad[0][0]}: max abs diff {bad[0][1]:.3g}, "
                             f"relative RMSE {bad[0][2]:.3g} > {MAX_REL_RMSE:g}); nothing written")

    atomic_write_path(output, write_and_check)
    dyn = [d for d, on in (("batch", args.dynamic_batch), (f"height/width (multiples of {stride})",
                                                           args.dynamic_size)) if on]
    print(f"exported {name} at {size[0]}x{size[1]} -> {output} ({os.path.getsize(output) / 2 ** 20:.1f} MiB; "
          f"dynamic: {', '.join(dyn) or 'none'})")
    for shape, max_abs, rel in results:
        print(f"onnxruntime vs PyTorch, input {list(shape)}: max abs diff {max_abs:.3g}, relative RMSE {rel:.3g}")
    return 0
