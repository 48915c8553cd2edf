"""The ViG mixer's 2D gate as the seq forward's epilogue (inference, vig::bigla_packed_gated):

    y = lerp(rmsnorm(loc) * w_l, rmsnorm(o) * w_g, sigmoid(gp + b)),  then silu(y) with OUT_SILU

on the rows of one head, where the forward holds o's finished rows in fp32. The separate gate kernel
(layers/fused/gate.py, the same math) reads o back after the op has written it: at ViG-T's 224² shape that is
19 MB written and read again a block, and a launch.
"""
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import load_tile


@triton.jit
def gate_rows(o, X, G, BG, WG, WL, t0, t_end, sxt, sgt, eps, V: tl.constexpr, BT: tl.constexpr,
              OUT_SILU: tl.constexpr, HAS_BG: tl.constexpr):
    """o [BT, V] (fp32) gated; X (loc) and G (gp) at this head's channels of their token rows, sxt / sgt apart,
    unit channel stride; BG (HAS_BG), WG, WL: this head's [V] bias and the two norms' weights."""
    loc = load_tile(X, t0, t_end, sxt, 1, V, BT)
    gp = load_tile(G, t0, t_end, sgt, 1, V, BT)
    cols = tl.arange(0, V)
    if HAS_BG:
        gp += tl.load(BG + cols).to(tl.float32)[None, :]
    s = tl.sigmoid(gp)
    r_o = 1.0 / tl.sqrt(tl.sum(o * o, axis=1) / V + eps)
    r_l = 1.0 / tl.sqrt(tl.sum(loc * loc, axis=1) / V + eps)
    yo = o * r_o[:, None] * tl.load(WG + cols).to(tl.float32)[None, :]
    yl = loc * r_l[:, None] * tl.load(WL + cols).to(tl.float32)[None, :]
    y = yl + s * (yo - yl)
    if OUT_SILU:
        y = y * tl.sigmoid(y)
    return y
