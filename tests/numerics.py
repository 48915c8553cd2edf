"""Error measures shared by the test folders (tests/ is on sys.path: conftest.py's folder under pytest's prepend
import mode, and PYTHONPATH in the `interpreted` fixture's child scripts)."""
import torch


def rel_rmse(a, b):
    """Relative RMSE of a against b in float64; inf when a holds a non-finite value, so no NaN passes a bound."""
    a, b = a.detach(), b.detach()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))
