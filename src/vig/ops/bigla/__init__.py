"""bigla(q, k, v, g_fwd, g_bwd): bidirectional gated linear attention.

o_t = scale * q_t (S^f_t + S^b_t) / 2 with S^f a causal gated state and S^b its
anti-causal mirror; see shared/design/bigla.md. Backends: "naive" (oracle),
"torch" (chunked pure PyTorch), "triton" (fused GPU kernel), "auto".
"torch" and "triton" both run through the custom op torch.ops.vig.bigla (custom_op.py),
so torch.compile sees one node and no graph break on CPU or GPU; plain eager "triton" calls skip
the op's dispatch for the same kernels (triton_call.py).
"""
import torch
import torch.autograd.forward_ad as fwAD

from vig.ops.bigla.custom_op import torch_bigla  # registers torch.ops.vig.bigla (no triton)
from vig.ops.bigla.gates import decays_of, log_decays
from vig.ops.bigla.naive import bigla_naive
from vig.ops.bigla.triton_call import bigla_triton_call
from vig.ops.bigla.validate import check_inputs

_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TRITON_DIMS = (16, 32, 64, 128)
_TRITON_IMPORTABLE = {}


def triton_available(device) -> bool:
    if device.type != "cuda":
        return False
    if "ok" not in _TRITON_IMPORTABLE:
        try:
            from vig.ops.bigla import triton as _kernels  # noqa: F401  (lazy: never at package import)
            _TRITON_IMPORTABLE["ok"] = True
        except ImportError:
            _TRITON_IMPORTABLE["ok"] = False
    return _TRITON_IMPORTABLE["ok"]


def resolve_backend(backend, device, dtype=None, dims=None):
    """"auto" -> "triton" for CUDA tensors the kernels support (importable triton, fp32/bf16/fp16,
    K and V in 16/32/64/128), else "torch"."""
    if backend != "auto":
        return backend
    if dtype is not None and dtype not in _TRITON_DTYPES:
        return "torch"
    if dims is not None and any(d not in _TRITON_DIMS for d in dims):
        return "torch"
    return "triton" if triton_available(device) else "torch"


def _forward_ad_active(*xs) -> bool:
    """Whether forward-mode AD (torch.autograd.forward_ad) tracks an input: the custom op has no jvp rule, and
    torch dropped the tangents silently there (a plain output with no tangent)."""
    return fwAD._current_level >= 0 and any(fwAD.unpack_dual(x).tangent is not None for x in xs)


def bigla(q, k, v, g_fwd, g_bwd, scale=None, *, backend="auto", check_gates=False, gate_logit_normalizer=None):
    """Bidirectional GLA. q, k, g_fwd, g_bwd: [B,T,H,K]; v: [B,T,H,V]. Returns [B,T,H,V] in q.dtype.

    g_fwd, g_bwd are log-space decays (<= 0), or with gate_logit_normalizer=n gate logits x whose decays
    are logsigmoid(x) / n (ViG: n = 16); the Triton backend then computes the decays in its kernels and
    the gradients flow to the logits."""
    gate_logit_normalizer = check_inputs(q, k, v, g_fwd, g_bwd, scale, backend, check_gates, gate_logit_normalizer)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    asked = backend
    backend = resolve_backend(backend, q.device, q.dtype, (q.shape[-1], v.shape[-1]))
    if torch._C._are_functorch_transforms_active() or _forward_ad_active(q, k, v, g_fwd, g_bwd):
        # torch.func transforms (grad, vmap, jacrev, ...) cannot pass the custom op's registered autograd
        # (torch raises "must override setup_context"), and forward-mode AD would lose its tangents in it:
        # the torch path runs as plain ops there
        if backend == "triton" and asked == "triton":
            raise NotImplementedError("bigla: backend='triton' does not run under torch.func transforms "
                                      "(grad, vmap, ...) or forward-mode AD; use backend='torch' or 'auto'")
        if backend != "naive":
            return torch_bigla(q, k, v, g_fwd, g_bwd, float(scale), gate_logit_normalizer)
    if backend == "naive":
        return bigla_naive(q, k, v, *decays_of(g_fwd, g_bwd, gate_logit_normalizer), scale)
    if backend == "triton":
        if q.device.type != "cuda":
            # the interpreter runs the kernels themselves on CPU for tests (vig.ops.bigla.triton.bigla_triton under
            # TRITON_INTERPRET=1), far too slowly to stand behind the public op
            raise ValueError(f"bigla: backend='triton' needs CUDA tensors, got tensors on {q.device}; use "
                             "backend='torch' (the same numbers) or 'auto'. To test the kernels on CPU, call "
                             "vig.ops.bigla.triton.bigla_triton with TRITON_INTERPRET=1 set before import")
        if q.dtype not in _TRITON_DTYPES:
            raise TypeError(f"bigla: backend='triton' supports fp32/bf16/fp16 inputs, got {q.dtype}")
        if q.shape[-1] not in _TRITON_DIMS or v.shape[-1] not in _TRITON_DIMS:
            raise ValueError(f"bigla: backend='triton' supports head dims K, V in {_TRITON_DIMS}, "
                             f"got K={q.shape[-1]}, V={v.shape[-1]}; use backend='torch'")
        return bigla_triton_call(q, k, v, g_fwd, g_bwd, float(scale), gate_logit_normalizer)
    return torch.ops.vig.bigla(q, k, v, g_fwd, g_bwd, float(scale), backend, gate_logit_normalizer)


__all__ = ["bigla", "bigla_naive", "log_decays", "resolve_backend"]
