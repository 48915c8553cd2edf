"""The "direct two-pass" bidirectional GLA, the baseline of the paper's Table 3 last row.

This is what the official release does in training (spec §3.2): concatenate the sequence and its flipped
copy along the batch, run ONE causal GLA on 2B sequences, flip the second half back and average. The
causal GLA here is our own chunked torch code, built like vig.ops.bigla.chunk (same chunk and sub-chunk
sizes, one direction), so comparing it with the fused torch path measures the fusion, not a different
library; fla-core's chunk_gla is used instead where it is installed. (On GPU, where the table is measured, the
fused torch path runs its pairwise form too; its eager CPU calls factor most chunks' scores, which this causal
code does not, so a CPU run of the table also measures that.)
"""
import contextlib
import functools
import math
import sys

import torch
import torch.nn.functional as F

from vig.ops.bigla import bigla
from vig.ops.bigla.gates import decays_of

try:  # the same sub-chunk size as the fused torch path, so the comparison isolates the fusion
    from vig.ops.bigla.chunk import SUB_CHUNK as SUB
except ImportError:
    SUB = 16


def _chunks(x, acc, pad, n, c):
    """[B, T, H, D] -> [B, H, N, C, D] in the accumulation dtype, zero-padded in T."""
    B, _, H, D = x.shape
    x = F.pad(x.to(acc), (0, 0, 0, 0, 0, pad)) if pad else x.to(acc)
    return x.reshape(B, n, c, H, D).permute(0, 3, 1, 2, 4)


def _causal_scores(q, k, a, sub):
    """P[i, j] = sum_k q_ik k_jk exp(a_ik - a_jk) for j <= i inside each chunk; [..., C, K] -> [..., C, C].

    Every exp() argument is <= 0: diagonal sub-blocks use pairwise differences; other blocks factor
    through the first position of the query's sub-chunk (a is non-increasing)."""
    *lead, C, K = q.shape
    S = C // sub
    qs, ks, as_ = (x.reshape(*lead, S, sub, K) for x in (q, k, a))
    tril = torch.ones(sub, sub, dtype=torch.bool, device=q.device).tril().unsqueeze(-1)
    pair = (as_.unsqueeze(-2) - as_.unsqueeze(-3)).masked_fill(~tril, float("-inf")).exp()
    diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * pair).sum(-1)  # [..., S, c, c]
    ref = as_[..., :, :1, :]
    before = torch.arange(C, device=q.device) // sub < torch.arange(S, device=q.device).unsqueeze(-1)  # [S, C]
    k_ref = k.unsqueeze(-3) * (ref - a.unsqueeze(-3)).masked_fill(~before.unsqueeze(-1), float("-inf")).exp()
    off = (qs * torch.exp(as_ - ref)) @ k_ref.transpose(-1, -2)  # [..., S, c, C]
    eye = torch.eye(S, dtype=q.dtype, device=q.device)
    return (off.reshape(*lead, S, sub, S, sub) + diag.unsqueeze(-2) * eye[:, None, :, None]).reshape(*lead, C, C)


def causal_gla_chunk(q, k, v, g, scale, chunk_size=64):
    """Causal GLA, o_t = scale * q_t S_t with S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t; [B,T,H,*] layout."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype = q.dtype
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    sub = math.gcd(int(chunk_size), SUB)
    C = min(int(chunk_size), -(-T // sub) * sub)
    N = -(-T // C)
    q, k, v, g = (_chunks(x, acc, N * C - T, N, C) for x in (q, k, v, g))
    a = g.cumsum(-2)
    o = _causal_scores(q, k, a, sub) @ v
    if N > 1:
        tot = a[..., -1, :]  # whole-chunk log-decay [B, H, N, K]
        local = torch.einsum("bhnck,bhncv->bhnkv", k * torch.exp(tot.unsqueeze(-2) - a), v)
        state, states = torch.zeros_like(local[:, :, 0]), []
        for n in range(N):  # incoming state of each chunk
            states.append(state)
            state = state * tot[:, :, n].exp().unsqueeze(-1) + local[:, :, n]
        o = o + (q * a.exp()) @ torch.stack(states, 2)
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


def bigla_two_pass(q, k, v, g_fwd, g_bwd, scale=None, *, causal="torch", gate_logit_normalizer=None, **_ignored):
    """Same result as vig.ops.bigla.bigla, computed as flip + concat + one causal pass on 2B sequences
    (gate logits, as the models pass them on CUDA, become log decays first, as the official code does: with
    plain torch ops, where the fused variant takes them in its kernels; VIG_FUSED_OFF=gate_logits gives
    every variant the same log-decay gates for a comparison of the op alone)."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    g_fwd, g_bwd = decays_of(g_fwd, g_bwd, gate_logit_normalizer)
    both = [torch.cat([x, x.flip(1)], 0) for x in (q, k, v)]
    g = torch.cat([g_fwd, g_bwd.flip(1)], 0)
    run = _fla_causal if causal == "fla" else causal_gla_chunk
    o_f, o_b = run(*both, g, scale).chunk(2)
    return (o_f + o_b.flip(1)) / 2


@contextlib.contextmanager
def patched_bigla(replacement):
    """Swap the op at its call sites (every vig.layers module that imported `bigla` or `bigla_packed`; the packed
    sites call `replacement` on the split views), restore on exit.

    Used by benchmarks only: the model code stays untouched."""
    import vig.layers  # noqa: F401  (load the layer modules before scanning them)
    from vig.ops.bigla.packed import bigla_packed, split_packed

    def packed(qkv, g, num_heads, head_k_dim, scale=None, **kwargs):
        return replacement(*split_packed(qkv, g, num_heads, head_k_dim), scale, **kwargs)
    swaps = {"bigla": (bigla, replacement), "bigla_packed": (bigla_packed, packed)}
    sites = [(m, attr) for name, m in list(sys.modules.items()) if name.startswith("vig.layers")
             for attr, (orig, _) in swaps.items() if getattr(m, attr, None) is orig]
    if not sites:
        raise RuntimeError("no vig.layers module calls vig.ops.bigla.bigla or bigla_packed; "
                           "cannot patch the op call site")
    for m, attr in sites:
        setattr(m, attr, swaps[attr][1])
    try:
        yield sorted({m.__name__ for m, _ in sites})
    finally:
        for m, attr in sites:
            setattr(m, attr, swaps[attr][0])


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
