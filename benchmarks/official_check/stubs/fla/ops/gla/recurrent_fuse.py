"""The recurrent GLA kernels of the bundled fla, as plain loops (float64 when the inputs are float64).

Kernel semantics (fused_recurrent_gla_fwd_kernel / bid_fused_recurrent_gla_fwd_kernel):
  per (b, h): S = 0; for each step t: S = diag(exp(gk_t)) S + k_t v_t^T; o_t = (scale * q_t)^T S
scale = -1 -> Dk ** -0.5. The bidirectional kernel takes gk of batch 2B = cat([g_fwd, g_bwd]) (not flipped),
runs the forward scan with gk[:B] and the reverse scan (t = T-1 .. 0) with gk[B:], both including k_t v_t^T,
and returns o.sum(0) / 2 over its [2*NK, ...] buffer = (o_f + o_b) / 2.
Written from the official kernels' semantics, not copied.
"""

import torch


def _scan(q, k, v, gk, scale, reverse):
    B, H, T, K = q.shape
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, a = q.to(acc) * scale, k.to(acc), v.to(acc), gk.to(acc).exp()
    S = q.new_zeros(B, H, K, v.shape[-1])
    o = q.new_zeros(B, H, T, v.shape[-1])
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        S = S * a[:, :, t, :, None] + k[:, :, t, :, None] * v[:, :, t, None, :]
        o[:, :, t] = torch.einsum("bhk,bhkv->bhv", q[:, :, t], S)
    return o


def fused_recurrent_gla(q, k, v, gk=None, gv=None, scale=-1, initial_state=None, output_final_state=False,
                        causal=True):
    assert gv is None and initial_state is None and not output_final_state and causal
    if scale == -1:
        scale = q.shape[-1] ** -0.5
    return _scan(q, k, v, gk, scale, False).to(q.dtype), None


def bid_fused_recurrent_gla(q, k, v, gk=None, gv=None, scale=-1, initial_state=None, output_final_state=False,
                            causal=True):
    assert gv is None and initial_state is None and not output_final_state and causal
    B = q.shape[0]
    assert gk.shape[0] == 2 * B, "gk must be cat([g_fwd, g_bwd], batch)"
    if scale == -1:
        scale = q.shape[-1] ** -0.5
    o_f = _scan(q, k, v, gk[:B], scale, False)
    o_b = _scan(q, k, v, gk[B:], scale, True)
    return ((o_f + o_b) / 2).to(q.dtype), None
