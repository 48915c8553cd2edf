"""ViG's gate parameterisation: log-space decays g = logsigmoid(x) / normalizer from gate logits x.

bigla(..., gate_logit_normalizer=n) takes the logits themselves: the Triton kernels compute the decays
as they load a tile (no fp32 decay tensor is written, read or saved for backward) and return the
gradient of the logits; the torch and naive backends apply this function first.
"""
import math

import torch
import torch.nn.functional as F


def log_decays(x: torch.Tensor, normalizer: float) -> torch.Tensor:
    """logsigmoid(x) / normalizer in float32 (float64 for float64 x): long products of near-1 decays
    are sensitive to the gates' precision, so half-precision logits are widened first."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    return F.logsigmoid(x.to(acc)) / normalizer


def decays_of(g_fwd, g_bwd, normalizer):
    """(g_fwd, g_bwd) as log-space decays: unchanged for normalizer None, else log_decays of the logits."""
    if normalizer is None:
        return g_fwd, g_bwd
    return log_decays(g_fwd, normalizer), log_decays(g_bwd, normalizer)


def check_normalizer(normalizer):
    """None, or a finite positive number (returned as float)."""
    if normalizer is None:
        return None
    if isinstance(normalizer, bool) or not isinstance(normalizer, (int, float)):
        raise TypeError(f"bigla: gate_logit_normalizer must be a float or None, got {type(normalizer).__name__}")
    if not math.isfinite(normalizer) or normalizer <= 0:
        raise ValueError(f"bigla: gate_logit_normalizer must be a finite positive float, got {normalizer}")
    return float(normalizer)
