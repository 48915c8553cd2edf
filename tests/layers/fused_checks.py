"""Helpers shared by the tests of this folder, also when the fused-kernel tests run as interpreter child
scripts (this folder is on sys.path both ways: pytest's prepend import mode, and the script's own directory)."""
import subprocess
import sys

import torch


def rel_rmse(a, b):
    """Relative RMSE of a against b in float64; inf when a holds a non-finite value."""
    a, b = a.detach(), b.detach()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


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
