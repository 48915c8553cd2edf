"""Helpers shared by the tests of this folder, also when the fused-kernel tests run as interpreter child
scripts (this folder is on sys.path both ways: pytest's prepend import mode, and the script's own directory)."""
import subprocess
import sys

import torch
from numerics import rel_rmse


def assert_import_leaves_unloaded(modules, kernel_module):
    """Importing `modules` (a fresh interpreter) must not load `kernel_module` (triton kernels load lazily)."""
    code = (f"import sys, {', '.join(modules)}; "
            f"assert {kernel_module!r} not in sys.modules, 'kernel module imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def assert_compiled_matches_plain(result, op_used, label, tol=1e-5):
    """An interpreter child's compiled-module record: whether the op was in its graph ("op_in_graph", 1 or 0, as
    `op_used`), and each output's / grad's relative RMSE against the plain eager path (at most `tol`)."""
    r = dict(result)
    assert r.pop("op_in_graph") == op_used, f"{label}: op_in_graph {result['op_in_graph']}, expected {op_used}"
    for k, e in r.items():
        assert e <= tol, f"{label} {k}: compiled with the op differs from the plain path by {e:.2e}"


def compiled_against_plain(routed_module, module, x, routes, op_name, *args):
    """{"y", "dx", each parameter with a grad: relative RMSE of `module` compiled (fullgraph, no inductor) with
    `routes` forced on for CPU tensors through routed_module.fused_op_enabled, against its plain eager path;
    "op_in_graph": 1 when `op_name` appears in a compiled graph}. The loss is mean(y^2); args follow x."""
    def run(fn):
        module.zero_grad()
        xx = x.clone().requires_grad_()
        y = fn(xx, *args)
        y.pow(2).mean().backward()
        return [y, xx.grad] + [p.grad for p in module.parameters() if p.grad is not None]
    plain = run(module)
    real = routed_module.fused_op_enabled
    routed_module.fused_op_enabled = lambda t, name="": name in routes
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm
    try:
        torch._dynamo.reset()
        fused = run(torch.compile(module, backend=backend, fullgraph=True))
    finally:
        routed_module.fused_op_enabled = real
    names = ["y", "dx"] + [n for n, p in module.named_parameters() if p.grad is not None]
    errs = {n: rel_rmse(f, p) for n, f, p in zip(names, fused, plain)}
    errs["op_in_graph"] = int(any(op_name in g for g in graphs))
    return errs
