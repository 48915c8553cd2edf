"""Input checks for the BiGLA op. Every message names the argument and what was expected."""
import math
import numbers

import torch

from vig.ops.bigla.gates import check_normalizer

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
BACKENDS = ("auto", "naive", "torch", "triton")


def check_inputs(q, k, v, g_fwd, g_bwd, scale, backend, check_gates=False, gate_logit_normalizer=None):
    """Raises on bad input; returns gate_logit_normalizer as a float (or None)."""
    if backend not in BACKENDS:
        raise ValueError(f"bigla: backend must be one of {BACKENDS}, got {backend!r}")
    named = {"q": q, "k": k, "v": v, "g_fwd": g_fwd, "g_bwd": g_bwd}
    for name, x in named.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"bigla: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"bigla: {name} must have rank 4 [B, T, H, D], got shape {tuple(x.shape)}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"bigla: {name} must be a floating tensor (fp32/bf16/fp16/fp64), got {x.dtype}")
        if x.device != q.device:
            raise ValueError(f"bigla: {name} is on {x.device} but q is on {q.device}; all inputs must share a device")
    B, T, H, K = q.shape
    if T < 1:
        raise ValueError(f"bigla: the sequence length T (dim 1 of q) must be >= 1, got {T}")
    for name in ("k", "g_fwd", "g_bwd"):
        if named[name].shape != q.shape:
            raise ValueError(f"bigla: {name} must have the shape of q {tuple(q.shape)}, got {tuple(named[name].shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"bigla: v must be [B, T, H, V] = [{B}, {T}, {H}, V], got {tuple(v.shape)}")
    if K < 1 or v.shape[-1] < 1:
        raise ValueError(f"bigla: the head dims K (dim 3 of q) and V (dim 3 of v) must be >= 1, got K={K}, "
                         f"V={v.shape[-1]}")
    for name in ("k", "v"):
        if named[name].dtype != q.dtype:
            raise TypeError(f"bigla: {name} has dtype {named[name].dtype} but q has {q.dtype}; q, k, v must share a dtype")
    for name in ("g_fwd", "g_bwd"):
        if named[name].dtype not in (q.dtype, torch.float32):
            raise TypeError(f"bigla: {name} must be float32 or the input dtype {q.dtype}, got {named[name].dtype}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):  # numpy's float32 is no float subclass
            raise TypeError(f"bigla: scale must be a float or None, got {type(scale).__name__}")
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"bigla: scale must be a finite positive float, got {scale}")
    gate_logit_normalizer = check_normalizer(gate_logit_normalizer)
    if check_gates and gate_logit_normalizer is not None:
        raise ValueError("bigla: check_gates applies to log-space gates; with gate_logit_normalizer the gates "
                         "are logits, whose decays are <= 0 by construction")
    if check_gates:
        for name in ("g_fwd", "g_bwd"):
            message = f"bigla: {name} must be <= 0 (log-space decays), found positive or NaN entries"
            ok = (named[name] <= 0).all()  # written so that NaN fails the check too
            if torch.compiler.is_compiling():
                # a host branch on the values cannot be traced (fullgraph=True failed with dynamo's data-dependent
                # guard error, naming no gate); an asserting op can (on CUDA a device-side assert)
                torch._assert_async(ok, message)
            elif not bool(ok):
                raise ValueError(message)
    return gate_logit_normalizer
