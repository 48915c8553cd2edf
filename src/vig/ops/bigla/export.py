"""vig::bigla as standard tensor ops, for exporters that know no custom op (ONNX).

`torch.onnx.export(model, x, dynamo=True)` lowers every op the ONNX registry lacks through
torch._decomp.decomposition_table; inside `onnx_decomposition()` that table holds `bigla_export` for the op, so it
exports as plain MatMul / CumSum / Exp nodes (vig.models.onnx_export.export_onnx and `vig export` enter it). Outside,
torch.export and torch.compile see the one opaque op, traced by its fake impl.

Why not chunk.py as it is: its chunk size, padding and Python loop over chunks depend on the sequence length,
which a dynamic image size makes symbolic; tracing it would specialise the graph to the example's length and
give wrong results (or a broadcast error) at any other size. Here every shape decision is symbolic-safe:
- chunks of a fixed CHUNK tokens, the tail zero-padded (zero keys and values add nothing; padded queries are
  dropped; a zero log-decay is a decay of 1 and only ever multiplies padding);
- the state entering chunk n sums the other chunks' own states with pairwise decays instead of a loop:
  in_f[n] = sum_{m<n} exp(sum_{m<j<n} tot[j]) loc[m]. The sums are cumsums of tot masked to j > m, so they never
  span more than the pair (no long-range cancellation, as chunk.py's numerics note asks). O(N^2 K) extra
  work and memory for N = T / CHUNK chunks: small beside the intra-chunk scores up to ~16k tokens (N = 512), 3.7 s
  and +750 MiB a call at 32k, 51 s at 65k (eager, one thread); onnx_export caps dynamic sizes accordingly.
"""
import contextlib

import torch
import torch.nn.functional as F

from vig.ops.autocast import no_autocast
from vig.ops.bigla.chunk import GATE_FLOOR, SUB_CHUNK, _intra_scores
from vig.ops.bigla.gates import decays_of

CHUNK = 32  # chunk.py's default; any multiple of SUB_CHUNK gives the same math


def _to_chunks(x, acc, pad, n):
    """[B, T, H, D] -> [B, H, N, CHUNK, D] in `acc`. Pads even by 0 tokens: chunk.py's `if pad:` would fix the
    graph to the example's choice (a size whose T is a multiple of CHUNK would then never pad)."""
    B, _, H, D = x.shape
    x = F.pad(x.to(acc), (0, 0, 0, 0, 0, pad))
    return x.reshape(B, n, CHUNK, H, D).permute(0, 3, 1, 2, 4).contiguous()


def _incoming_states(local, tot):
    """Forward state entering each chunk, [B, H, N, K, V], from each chunk's own state `local` [B, H, N, K, V] and
    its whole-chunk log-decay `tot` [B, H, N, K], without a loop over N."""
    n = local.shape[2]
    idx = torch.arange(n, device=local.device)
    later = idx.unsqueeze(1) < idx.unsqueeze(0)  # [m, j]: j > m
    # span[m, j] = sum_{m<i<=j} tot[i]; shifted one step right it is the sum over m < i < j
    span = torch.where(later.unsqueeze(-1), tot.unsqueeze(2), 0.0).cumsum(3)  # [B, H, m, j, K]
    span = F.pad(span, (0, 0, 1, 0))[:, :, :, :n]
    weight = torch.where(later.unsqueeze(-1), span, float("-inf")).exp()  # exp(-inf) = 0 for m >= n
    return torch.einsum("bhmnk,bhmkv->bhnkv", weight, local)


def bigla_export(q, k, v, g_fwd, g_bwd, scale, gate_normalizer=None):
    """BiGLA in standard ops with every shape symbolic-safe (dynamic batch and sequence length); same contract and
    numbers as chunk.bigla_chunk (within float rounding)."""
    with no_autocast(q.device):
        g_fwd, g_bwd = decays_of(g_fwd, g_bwd, gate_normalizer)
        B, T, H, _ = q.shape
        V = v.shape[-1]
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        n = (T + CHUNK - 1) // CHUNK
        pad = n * CHUNK - T
        q_, k_, v_, gf, gb = (_to_chunks(x, acc, pad, n) for x in (q, k, v, g_fwd, g_bwd))
        gf, gb = gf.clamp(min=GATE_FLOOR), gb.clamp(min=GATE_FLOOR)
        a_f = gf.cumsum(-2)
        a_b = gb.flip(-2).cumsum(-2).flip(-2)
        o = _intra_scores(q_, k_, a_f, a_b, SUB_CHUNK) @ v_

        tot_f, tot_b = a_f[..., -1, :], a_b[..., 0, :]
        loc_f = torch.einsum("bhnck,bhncv->bhnkv", k_ * torch.exp(tot_f.unsqueeze(-2) - a_f), v_)
        loc_b = torch.einsum("bhnck,bhncv->bhnkv", k_ * torch.exp(tot_b.unsqueeze(-2) - a_b), v_)
        in_f = _incoming_states(loc_f, tot_f)
        in_b = _incoming_states(loc_b.flip(2), tot_b.flip(2)).flip(2)  # the anti-causal scan, mirrored
        q_dec = torch.cat([q_ * a_f.exp(), q_ * a_b.exp()], -1)
        o = (o + q_dec @ torch.cat([in_f, in_b], -2)) * (scale / 2)
        o = o.permute(0, 2, 3, 1, 4).reshape(B, n * CHUNK, H, V)[:, :T]
        return o.to(q.dtype).contiguous()


@contextlib.contextmanager
def onnx_decomposition():
    """Within it, vig::bigla lowers to bigla_export wherever torch's decomposition table is consulted in full (the
    ONNX exporter). Never left registered: fake tensors with symbolic sizes also read that table (before the op's
    own fake impl), which put bigla_export's chunk-count guards into every dynamic-shape torch.export and compile
    of the models (a dynamic-size export then failed at run time at other chunk counts)."""
    from torch._decomp import decomposition_table
    op = torch.ops.vig.bigla.default
    before = decomposition_table.get(op)

    def _bigla_decomposition(q, k, v, g_fwd, g_bwd, scale, backend, gate_normalizer=None):
        return bigla_export(q, k, v, g_fwd, g_bwd, scale, gate_normalizer)

    decomposition_table[op] = _bigla_decomposition
    try:
        yield
    finally:
        if before is None:
            decomposition_table.pop(op, None)
        else:
            decomposition_table[op] = before
