"""A shared context for the op's reference backends (naive.py, chunk.py), kept apart so the oracle imports nothing
from the chunked path it checks."""
import contextlib

import torch


def no_autocast(device):
    """A context without autocast for `device`: the op computes in float32 (float64) as documented, also inside an
    autocast region. Under CPU autocast the reference backends' matmuls ran in bf16 in eager mode only (o within
    ~4e-3 of float64 for fp32 inputs, while its backward and torch.compile's opaque custom op computed in fp32)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
