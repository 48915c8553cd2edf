"""bigla(q, k, v, g_fwd, g_bwd): bidirectional gated linear attention.

o_t = scale * q_t (S^f_t + S^b_t) / 2 with S^f a causal gated state and S^b its
anti-causal mirror; see shared/design/bigla.md. Backends: "naive" (oracle),
"torch" (chunked pure PyTorch), "triton" (fused GPU kernel), "auto".
"""
from vig.ops.bigla.validate import check_inputs
from vig.ops.bigla.naive import bigla_naive


def triton_available(device) -> bool:
    if device.type != "cuda":
        return False
    try:
        from vig.ops.bigla import triton as _kernels  # noqa: F401  (lazy: never at package import)
    except ImportError:
        return False
    return True


def resolve_backend(backend, device):
    if backend != "auto":
        return backend
    return "triton" if triton_available(device) else "torch"


def bigla(q, k, v, g_fwd, g_bwd, scale=None, *, backend="auto", check_gates=False):
    """Bidirectional GLA. q, k, g_fwd, g_bwd: [B,T,H,K]; v: [B,T,H,V]. Returns [B,T,H,V] in q.dtype."""
    check_inputs(q, k, v, g_fwd, g_bwd, scale, backend, check_gates)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    backend = resolve_backend(backend, q.device)
    if backend == "naive":
        return bigla_naive(q, k, v, g_fwd, g_bwd, scale)
    if backend == "torch":
        from vig.ops.bigla.chunk import bigla_chunk
        return bigla_chunk(q, k, v, g_fwd, g_bwd, scale)
    if q.device.type != "cuda":
        raise ValueError(f"bigla: backend='triton' needs CUDA tensors, got tensors on {q.device}")
    from vig.ops.bigla.triton import bigla_triton
    return bigla_triton(q, k, v, g_fwd, g_bwd, scale)


__all__ = ["bigla", "bigla_naive", "resolve_backend"]
