"""The "direct two-pass" bidirectional GLA, the baseline of the paper's Table 3 last row.

This is what the official release does in training (spec §3.2): concatenate the sequence and its flipped
copy along the batch, run ONE causal GLA on 2B sequences, flip the second half back and average. The
causal GLA here is our own chunked torch code (the forward half of vig.ops.bigla.chunk), so comparing it
with the fused op measures the fusion, not a different library; fla-core's chunk_gla is used instead
where it is installed.
"""
import contextlib
import functools
import math
import sys

import torch

from vig.ops.bigla import bigla
from vig.ops.bigla.chunk import SUB_CHUNK, _intra_scores, _scan_states, _to_chunks


def causal_gla_chunk(q, k, v, g, scale, chunk_size=64):
    """Causal GLA, o_t = scale * q_t S_t with S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t; [B,T,H,*] layout."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype = q.dtype
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    sub = math.gcd(int(chunk_size), SUB_CHUNK)
    C = min(int(chunk_size), -(-T // sub) * sub)
    N = -(-T // C)
    q, k, v, g = (_to_chunks(x, acc, N * C - T, N, C) for x in (q, k, v, g))
    a = g.cumsum(-2)
    scores = _intra_scores(q, k, a, True, sub) + torch.diag_embed((q * k).sum(-1))
    o = scores @ v
    if N > 1:
        tot = a[..., -1, :]
        local = torch.einsum("bhnck,bhncv->bhnkv", k * torch.exp(tot.unsqueeze(-2) - a), v)
        o = o + (q * a.exp()) @ _scan_states(local, tot.exp(), reverse=False)
    o = (o * scale).permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype)


def _fla_causal(q, k, v, g, scale):
    from fla.ops.gla import chunk_gla  # optional dependency: only where fla-core is installed
    o = chunk_gla(q, k, v, g, scale=scale)
    return o[0] if isinstance(o, tuple) else o


def fla_available():
    try:
        from fla.ops.gla import chunk_gla  # noqa: F401
    except Exception:  # noqa: BLE001  (any import failure means: not usable here)
        return False
    return True


def bigla_two_pass(q, k, v, g_fwd, g_bwd, scale=None, *, causal="torch", **_ignored):
    """Same result as vig.ops.bigla.bigla, computed as flip + concat + one causal pass on 2B sequences."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    both = [torch.cat([x, x.flip(1)], 0) for x in (q, k, v)]
    g = torch.cat([g_fwd, g_bwd.flip(1)], 0)
    run = _fla_causal if causal == "fla" else causal_gla_chunk
    o_f, o_b = run(*both, g, scale).chunk(2)
    return (o_f + o_b.flip(1)) / 2


@contextlib.contextmanager
def patched_bigla(replacement):
    """Swap the op at its call sites (every vig.layers module that imported `bigla`), restore on exit.

    Used by benchmarks only: the model code stays untouched."""
    import vig.layers  # noqa: F401  (load the layer modules before scanning them)
    sites = [m for name, m in list(sys.modules.items())
             if name.startswith("vig.layers") and getattr(m, "bigla", None) is bigla]
    if not sites:
        raise RuntimeError("no vig.layers module calls vig.ops.bigla.bigla; cannot patch the op call site")
    for m in sites:
        m.bigla = replacement
    try:
        yield [m.__name__ for m in sites]
    finally:
        for m in sites:
            m.bigla = bigla


def variant(name):
    """The op used by one ablation variant (None: the model's own op, backend auto)."""
    if name == "fused":
        return None
    if name == "fused_torch":
        return functools.partial(bigla, backend="torch")
    if name == "two_pass_torch":
        return functools.partial(bigla_two_pass, causal="torch")
    if name == "two_pass_fla":
        return functools.partial(bigla_two_pass, causal="fla")
    raise ValueError(f"unknown ablation variant {name!r}; choose fused, fused_torch, two_pass_torch, two_pass_fla")
