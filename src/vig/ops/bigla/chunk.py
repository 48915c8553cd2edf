"""Chunked pure-PyTorch BiGLA: the CPU path and a readable second opinion to the Triton kernel.

Same math as naive.py (shared/design/bigla.md), regrouped into chunks of C tokens:
- inside a chunk, the forward (lower-triangular) and backward (upper-triangular) decay-weighted
  score matrices, both with the diagonal, are summed and multiplied by v once;
- between chunks, forward states run left->right and backward states right->left.

In-chunk scores take one of two forms. Pairwise (_intra_scores): [c, c, K] decays inside 8-token sub-chunks, safe
for any gates <= 0, no value-dependent branch (compile, export, tracing, GPU). Factored (_intra_scores_factored): two
dots per direction through the middle of each channel's range of cumulative gates, for the chunks whose range allows
it, chosen per chunk on eager CPU calls; the op 2-2.5x faster there (benchmarks/NOTES_bigla.md, session 56).

Numerics: outside the factored form (whose exponents its span limit keeps within +-30), every exp() takes a
difference of cumulative log-decays arranged to be <= 0, measured from a reference inside the same chunk or
sub-chunk, so extreme gates underflow to 0 instead of overflowing; and cumulative sums never span more than one
chunk, so long sequences keep fp32 precision (a global cumsum at T=16k would reach |A| ~ 1e3 and lose ~1e-4 of
relative accuracy). Gradients come from autograd through these torch ops. The one value-dependent branch, the
choice of form, is taken on eager CPU calls only, so torch.compile traces the pairwise form without graph breaks.
"""
import math

import torch
import torch.nn.functional as F

from vig.ops.autocast import no_autocast

SUB_CHUNK = 8  # pairwise [c, c, K] decays only inside 8-token sub-chunks: bounds memory and exp work
# A gate of -inf (a hard reset) would give (-inf) - (-inf) = nan in the log-decay differences.
# exp(-200) is 0 in fp32 and ~1e-87 in fp64, so clamping there changes no value or gradient.
GATE_FLOOR = -200.0
# Eager CPU calls factor each chunk's pairwise decays through the middle of its cumulative gates' range
# (_intra_scores_factored): two dots per direction, no [c, c, K] tensor. Its factors reach exp(span / 2), span = that
# range, so only chunks whose span stays within this take it (each factor within e^+-30; a masked-out product within
# e^60, finite for any sane q, k).
FACTOR_SPAN_MAX = 60.0


def _to_chunks(x, acc, pad, n_chunks, chunk):
    """[B, T, H, D] (any strides) -> [B, H, N, C, D] in the accumulation dtype, zero-padded in T."""
    B, _, H, D = x.shape
    x = x.to(acc)
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
    return x.reshape(B, n_chunks, chunk, H, D).permute(0, 3, 1, 2, 4).contiguous()


def _intra_scores(q, k, a_f, a_b, sub):
    """Both directions' decay-weighted scores inside each chunk, summed: [..., C, K] -> [..., C, C].

    P[i, j] = sum_k q_ik k_jk w_ijk with w = exp(a_f_i - a_f_j) for j < i (a_f: inclusive cumsum of
    g_fwd, non-increasing), exp(a_b_i - a_b_j) for j > i (a_b: reverse cumsum of g_bwd,
    non-decreasing) and w = 2 on the diagonal (k_t v_t is counted in both directions).
    Each (i, j) pair belongs to one direction only, so both share one exp pass.
    Off-diagonal sub-chunk blocks factor through a reference at the query sub-chunk's edge
    (both factors are exp(<= 0)); only the diagonal blocks need pairwise [c, c, K] decays.
    """
    *lead, C, K = q.shape
    S = C // sub
    qs, ks, fs, bs = (x.reshape(*lead, S, sub, K) for x in (q, k, a_f, a_b))
    dev = q.device

    # diagonal sub-chunk blocks, pairwise. The diagonal weight is the constant 2, not exp(a_i - a_i):
    # that would send +x and -x to the same a_i, which cancel in fp32 and swamp tiny true gate grads.
    tri = torch.ones(sub, sub, dtype=torch.bool, device=dev)
    lower, upper = tri.tril(-1).unsqueeze(-1), tri.triu(1).unsqueeze(-1)
    expo = torch.where(lower, fs.unsqueeze(-2) - fs.unsqueeze(-3),
                       torch.where(upper, bs.unsqueeze(-2) - bs.unsqueeze(-3), math.log(2.0)))
    diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * expo.exp()).sum(-1)  # [..., S, c, c]

    # off-diagonal blocks: query sub-chunk s against all keys of earlier (fwd) / later (bwd) sub-chunks
    ref_f, ref_b = fs[..., :, :1, :], bs[..., :, -1:, :]  # [..., S, 1, K]
    q_f, q_b = qs * torch.exp(fs - ref_f), qs * torch.exp(bs - ref_b)
    key_sub = torch.arange(C, device=dev) // sub
    s_idx = torch.arange(S, device=dev).unsqueeze(-1)
    before, after = key_sub < s_idx, key_sub > s_idx  # [S, C]
    expo = torch.where(before.unsqueeze(-1), ref_f - a_f.unsqueeze(-3),
                       torch.where(after.unsqueeze(-1), ref_b - a_b.unsqueeze(-3), float("-inf")))
    k_ref = (k.unsqueeze(-3) * expo.exp()).transpose(-1, -2)  # [..., S, K, C]
    off = torch.where(before.unsqueeze(-2), q_f @ k_ref, q_b @ k_ref)  # [..., S, c, C]

    eye = torch.eye(S, dtype=q.dtype, device=dev)
    scores = off.reshape(*lead, S, sub, S, sub) + diag.unsqueeze(-2) * eye[:, None, :, None]
    return scores.reshape(*lead, C, C)


def _intra_scores_factored(q, k, a_f, a_b, ref_f, ref_b):
    """_intra_scores through one reference per chunk and channel, the middle of its cumulative gates' range (about
    half the chunk's gate sum for gates <= 0, the Triton kernel's fast path's reference):
    exp(a_i - a_j) = exp(a_i - r) exp(r - a_j). Right for chunks whose span is within
    FACTOR_SPAN_MAX; the clamp only keeps the others' factors finite (their scores are replaced, and a zero
    gradient times an infinite factor would be nan). The references are detached: the product does not depend
    on them, so their gradient paths would only add terms that cancel (ref_*: [..., 1, K], from _gate_ranges)."""
    lim = FACTOR_SPAN_MAX / 2
    e_f, e_b = (a_f - ref_f).clamp(-lim, lim), (a_b - ref_b).clamp(-lim, lim)
    p_f = (q * e_f.exp()) @ (k * (-e_f).exp()).transpose(-1, -2)
    p_b = (q * e_b.exp()) @ (k * (-e_b).exp()).transpose(-1, -2)
    idx = torch.arange(q.shape[-2], device=q.device)
    p = torch.where(idx[:, None] > idx[None, :], p_f, torch.where(idx[:, None] < idx[None, :], p_b, 0.0))
    return p + torch.diag_embed(2 * (q * k).sum(-1))


def _gate_ranges(a):
    """Range of each channel's cumulative gates in each chunk, [..., K] (not the chunk's total: gates > 0, outside
    the contract but let through unchecked, make the cumsum non-monotonic), and its middle, the factors' detached
    reference, [..., 1, K]."""
    hi, lo = a.amax(-2, keepdim=True), a.amin(-2, keepdim=True)
    return (hi - lo).squeeze(-2), ((hi + lo) / 2).detach()


def _eager_cpu(x) -> bool:
    """Whether the call may branch on its values: eager CPU, outside compile, export, tracing, fake tensors and
    functorch (the branch reads a tensor's value, which those cannot, and on a GPU it would sync, which CUDA graphs
    refuse)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():  # first: dynamo cannot trace the checks below
        return False
    tracing = torch.jit.is_tracing() or torch.fx._symbolic_trace.is_fx_symbolic_tracing()
    fake = isinstance(x, torch._subclasses.fake_tensor.FakeTensor) or torch._guards.detect_fake_mode() is not None
    return not tracing and not fake and not torch._C._are_functorch_transforms_active()


def _intra(q, k, a_f, a_b, sub):
    """Both directions' in-chunk scores: factored where a chunk's span allows (eager CPU), pairwise elsewhere."""
    if not _eager_cpu(q):
        return _intra_scores(q, k, a_f, a_b, sub)
    (range_f, ref_f), (range_b, ref_b) = _gate_ranges(a_f), _gate_ranges(a_b)
    strong = torch.maximum(range_f, range_b).amax(-1) > FACTOR_SPAN_MAX  # [B, H, N]
    p = _intra_scores_factored(q, k, a_f, a_b, ref_f, ref_b)
    if strong.any():
        at = strong.nonzero(as_tuple=True)
        p = p.index_put(at, _intra_scores(q[at], k[at], a_f[at], a_b[at], sub))
    return p


def _scan_states(local, decay, reverse):
    """Incoming state of every chunk, [B, H, N, K, V], given each chunk's own state `local`
    [B, H, N, K, V] and its whole-chunk decay `decay` [B, H, N, K]. A Python loop over N = T / C
    chunks: short, and unlike a closed-form scan it never forms cumsums that span the sequence."""
    N = local.shape[2]
    order = range(N - 1, -1, -1) if reverse else range(N)
    # unbound once: indexing local[:, :, n] in the loop made autograd add N full-size zero tensors of gradient
    # (select's backward), O(N^2) work that took ~30% of fwd+bwd at T = 3136 on CPU
    locals_, decays = local.unbind(2), decay.unsqueeze(-1).unbind(2)
    state = torch.zeros_like(locals_[0])
    states = [None] * N
    for n in order:
        states[n] = state
        state = state * decays[n] + locals_[n]
    return torch.stack(states, 2)


def bigla_chunk(q, k, v, g_fwd, g_bwd, scale, chunk_size=32):
    """Chunked BiGLA. q, k, g_*: [B, T, H, K]; v: [B, T, H, V]; returns [B, T, H, V] in q.dtype.

    Computes in float64 when q is float64, else float32. chunk_size: tokens per chunk (a multiple
    of 8 is fastest); short sequences use a smaller chunk automatically. 32, not 64, by default:
    on CPU it pads T=196 less (224 vs 256) and measured ~1.5x faster fwd+bwd there, equal at T=3136.
    """
    with no_autocast(q.device):
        return _bigla_chunk(q, k, v, g_fwd, g_bwd, scale, chunk_size)


def _bigla_chunk(q, k, v, g_fwd, g_bwd, scale, chunk_size):
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype = q.dtype
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    sub = math.gcd(int(chunk_size), SUB_CHUNK)
    C = min(int(chunk_size), -(-T // sub) * sub)
    N = -(-T // C)
    pad = N * C - T
    q, k, v, gf, gb = (_to_chunks(x, acc, pad, N, C) for x in (q, k, v, g_fwd, g_bwd))

    gf, gb = gf.clamp(min=GATE_FLOOR), gb.clamp(min=GATE_FLOOR)
    a_f = gf.cumsum(-2)  # A_t - A_{chunk start - 1}: non-increasing inside the chunk
    a_b = gb.flip(-2).cumsum(-2).flip(-2)  # C_t - C_{chunk end + 1}: non-decreasing
    o = _intra(q, k, a_f, a_b, sub) @ v

    if N > 1:
        tot_f, tot_b = a_f[..., -1, :], a_b[..., 0, :]  # whole-chunk log-decays, [B, H, N, K]
        loc_f = torch.einsum("bhnck,bhncv->bhnkv", k * torch.exp(tot_f.unsqueeze(-2) - a_f), v)
        loc_b = torch.einsum("bhnck,bhncv->bhnkv", k * torch.exp(tot_b.unsqueeze(-2) - a_b), v)
        in_f = _scan_states(loc_f, tot_f.exp(), reverse=False)
        in_b = _scan_states(loc_b, tot_b.exp(), reverse=True)
        o = o + (q * a_f.exp()) @ in_f + (q * a_b.exp()) @ in_b

    o = o * (scale / 2)
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype)
