"""Fused CUDA kernels for the layers around the BiGLA op (Triton, imported lazily).

Nothing here imports triton at package import time: `fused_enabled(x)` only checks whether the
fused path may be taken, and callers import `vig.layers.fused.rmsnorm` after that check.
Set VIG_FUSED=0 to force the plain-PyTorch path (used for A/B timings and debugging).
"""
import os

import torch

_TRITON = {}
# Correct (tested) but measured slower: ViG-T training step on an H100, bf16 bs256, same run:
# 2,338 img/s with both, 2,805 without add_rmsnorm, 2,575 without gate_silu, 2,869 without either.
OPT_IN = ("add_rmsnorm", "gate_silu")


def _triton_importable() -> bool:
    if "ok" not in _TRITON:
        try:
            import triton  # noqa: F401
            _TRITON["ok"] = True
        except ImportError:
            _TRITON["ok"] = False
    return _TRITON["ok"]


def fused_enabled(x: torch.Tensor, name: str = "") -> bool:
    """True when x lives on CUDA, VIG_FUSED is not '0', triton imports, and we are not being
    traced by torch.compile (which fuses the plain path itself and cannot trace a Triton launch).
    VIG_FUSED_OFF=name,... turns single fusions off for A/B timings (names at the call sites);
    VIG_FUSED_ON=name,... turns on the ones that are off by default (OPT_IN)."""
    if not rewrite_enabled(x, name):
        return False
    if name in OPT_IN and name not in os.environ.get("VIG_FUSED_ON", "").split(","):
        return False
    if torch.compiler.is_compiling():
        return False
    return _triton_importable()


def rewrite_enabled(x: torch.Tensor, name: str) -> bool:
    """For plain-PyTorch rewrites that only pay off on CUDA (no Triton, so also under torch.compile):
    x on CUDA, VIG_FUSED not '0' and `name` not in VIG_FUSED_OFF. fused_enabled adds its checks to these."""
    if not x.is_cuda or os.environ.get("VIG_FUSED", "1") == "0":
        return False
    return not name or name not in os.environ.get("VIG_FUSED_OFF", "").split(",")
