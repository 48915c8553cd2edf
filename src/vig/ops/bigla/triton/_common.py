"""Triton helpers shared by the forward, backward and segment-state kernels.

All decays are carried in log2 units (g * log2(e)) so every exponential is one exp2.
Every exponent that reaches exp2 is a partial sum of gates between a later and an
earlier position of the same direction, hence <= 0: nothing can overflow, whatever
the gates. Intra-chunk pairs are therefore computed exactly as a [BT, BT, K] tensor
instead of the usual q*exp(a) / k*exp(-a) factorisation, which overflows for strong gates.
"""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def load_tile(base, t0, t_end, stride_t, stride_d, D: tl.constexpr, BT: tl.constexpr):
    """Rows [t0, t0+BT) of a [T, D] strided view as fp32; rows >= t_end read as 0."""
    rows = t0 + tl.arange(0, BT)
    cols = tl.arange(0, D)
    ptrs = base + rows[:, None].to(tl.int64) * stride_t + cols[None, :] * stride_d
    return tl.load(ptrs, mask=(rows < t_end)[:, None], other=0.0).to(tl.float32)


@triton.jit
def store_tile(base, x, t0, t_end, stride_t, stride_d, D: tl.constexpr, BT: tl.constexpr):
    rows = t0 + tl.arange(0, BT)
    cols = tl.arange(0, D)
    ptrs = base + rows[:, None].to(tl.int64) * stride_t + cols[None, :] * stride_d
    tl.store(ptrs, x.to(base.dtype.element_ty), mask=(rows < t_end)[:, None])


@triton.jit
def load_state(base, K: tl.constexpr, V: tl.constexpr):
    rk = tl.arange(0, K)
    rv = tl.arange(0, V)
    return tl.load(base + rk[:, None] * V + rv[None, :])


@triton.jit
def store_state(base, s, K: tl.constexpr, V: tl.constexpr):
    rk = tl.arange(0, K)
    rv = tl.arange(0, V)
    tl.store(base + rk[:, None] * V + rv[None, :], s)


@triton.jit
def decay3(a, c, BT: tl.constexpr):
    """Exact intra-chunk decays [t, s, k], diagonal excluded: exp(a_t - a_s) for s < t
    (forward direction, a = inclusive cumsum) and exp(c_t - c_s) for s > t (backward
    direction, c = reverse cumsum). The diagonal (decay 1, counted in both directions as
    the contract says) is added apart: its q_t dq_t and k_t dk_t parts cancel exactly in
    the gate gradients, so keeping it out of them avoids fp32 cancellation for strong gates."""
    idx = tl.arange(0, BT)
    tt = idx[:, None, None]
    ss = idx[None, :, None]
    ef = tl.exp2(tl.where(tt > ss, a[:, None, :] - a[None, :, :], float("-inf")))
    eb = tl.exp2(tl.where(tt < ss, c[:, None, :] - c[None, :, :], float("-inf")))
    return ef, eb


@triton.jit
def scores(qq, kk, ef, eb, BT: tl.constexpr):
    """Intra-chunk scores of both directions, summed: P[t, s], diagonal 2 q_t.k_t."""
    idx = tl.arange(0, BT)
    p = tl.sum(qq[:, None, :] * kk[None, :, :] * (ef + eb), axis=2)
    diag = 2.0 * tl.sum(qq * kk, axis=1)
    return p + tl.where(idx[:, None] == idx[None, :], diag[:, None], 0.0)
