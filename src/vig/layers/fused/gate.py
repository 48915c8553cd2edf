"""The 2D gate of the ViG mixers in one Triton kernel each way:

    out = lerp(rmsnorm(loc) * w_l, rmsnorm(o) * w_g, sigmoid(gp))      rows of one head, dim D
    out = silu(out)                                        with out_silu (ViG-T's out_act)

The plain path runs two norms (each ~7 elementwise kernels), a sigmoid and the blend, and
rounds to the activation dtype after each; this reads o, loc, gp once, writes out once, and
rounds once. The backward recomputes the norms from the inputs (no saved activations beyond
the inputs and two per-row rstd) and writes per-block partial weight grads summed in torch.
Folding ViG-T's SiLU in saves its own read + write each way and one bf16 rounding.
"""
import os

import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv, sm_count

from vig.layers.fused import MAX_NORM_DIM, as_rows
from vig.layers.fused.rmsnorm import _blocks

_TILE = 2048  # the forward's row tile (fp32 values per live tile)
# The backward keeps ~10 row tiles live, so it takes smaller ones, on rmsnorm._blocks' 4 warps (D <= 1024). At its
# old 2,048-row tile (142 registers a thread, 3 programs per SM) 8 warps (80 registers) timed slower at every tile
# on an H200 (session 18, tile 2,048: ViG-T 87 against 76 us, ViG-B 286 against 232; benchmarks/NOTES_bigla.md).
# The backward's grid is persistent (gate_bwd_kernel's PERSISTENT): 4 programs per SM, each walking tiles of 1,024 rows.
# H200, session 23 (benchmarks/NOTES_bigla.md): 57 against 81 us at ViG-T (1.7 -> 2.4 TB/s), 165 against 253 us at
# ViG-B, than one program per 2,048-row block; ViG-T training 14,314 against 14,031 img/s. ptxas (triton 3.8, sm_90a)
# gives it 103 registers. Module attributes, for benchmarks/bench_fused_layers.py; VIG_GATE_BWD=tile,programs_per_sm
# sets them for a whole model's run (A/B; 2048,0 is the old non-persistent default).
BWD_TILE, BWD_PROGRAMS_PER_SM = 1024, 4


def _bwd_setting(value):
    try:
        tile, per_sm = (int(v) for v in value.split(","))
    except ValueError:
        tile = per_sm = -1
    if tile not in (512, 1024, 2048, 4096, 8192) or per_sm < 0:
        raise ValueError(f"VIG_GATE_BWD must be 'tile,programs_per_sm' with tile a power of two in 512..8192 and "
                         f"programs_per_sm >= 0 (0: one row block per program), got {value!r}")
    return tile, per_sm


if os.environ.get("VIG_GATE_BWD"):
    BWD_TILE, BWD_PROGRAMS_PER_SM = _bwd_setting(os.environ["VIG_GATE_BWD"])


@triton.jit
def _load(P, rows, cols, stride, mask):
    return tl.load(P + rows[:, None] * stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _token_and_head(rows, HEADS: tl.constexpr):
    """Row r is head r % HEADS of token r // HEADS. The division is on 32-bit rows (gate_forward checks they fit)
    by a constant: a multiply, not a 64-bit division call."""
    r32 = rows.to(tl.int32)
    tok = r32 // HEADS
    return tok.to(tl.int64), (r32 - tok * HEADS).to(tl.int64)


@triton.jit
def gate_fwd_kernel(O, L, G, BG, WG, WL, OUT, RSTD_O, RSTD_L, M, D, s_o, s_l, s_g, s_out, eps,
                    OUT_SILU: tl.constexpr, HEADS: tl.constexpr, HAS_BG: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    """Rows of one head (HEADS per token, each token's heads D apart, tokens s_* apart: o, loc and gp may be column
    slices of wider per-token buffers); HAS_BG adds the gate logits' bias BG [HEADS * D] before the sigmoid."""
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    rmask, cmask = rows < M, cols < D
    mask = rmask[:, None] & cmask[None, :]
    tok, head = _token_and_head(rows, HEADS)
    o = _load(O, tok * s_o + head * D, cols, 1, mask)
    loc = _load(L, tok * s_l + head * D, cols, 1, mask)
    gp = _load(G, tok * s_g + head * D, cols, 1, mask)
    if HAS_BG:
        gp += _load(BG, head * D, cols, 1, mask)
    s = tl.sigmoid(gp)
    r_o = 1.0 / tl.sqrt(tl.sum(o * o, axis=1) / D + eps)
    r_l = 1.0 / tl.sqrt(tl.sum(loc * loc, axis=1) / D + eps)
    wg = tl.load(WG + cols, mask=cmask, other=0.0).to(tl.float32)
    wl = tl.load(WL + cols, mask=cmask, other=0.0).to(tl.float32)
    yo = o * r_o[:, None] * wg[None, :]
    yl = loc * r_l[:, None] * wl[None, :]
    out = yl + s * (yo - yl)
    if OUT_SILU:
        out = out * tl.sigmoid(out)
    tl.store(OUT + rows[:, None] * s_out + cols[None, :], out.to(OUT.dtype.element_ty), mask=mask)
    tl.store(RSTD_O + rows, r_o, mask=rmask)
    tl.store(RSTD_L + rows, r_l, mask=rmask)


@triton.jit
def _bwd_rows(O, L, G, WG, WL, DOUT, RSTD_O, RSTD_L, DO, DL, DG, rows, cols, cmask, M, D, s_o, s_l, s_g, s_dout,
              OUT_SILU: tl.constexpr):
    """One row block's input grads, stored; returns its two weight-grad products (summed over rows by the caller)."""
    rmask = rows < M
    mask = rmask[:, None] & cmask[None, :]
    dout = _load(DOUT, rows, cols, s_dout, mask)
    s = tl.sigmoid(_load(G, rows, cols, s_g, mask))
    r_o = tl.load(RSTD_O + rows, mask=rmask, other=0.0)
    r_l = tl.load(RSTD_L + rows, mask=rmask, other=0.0)
    ohat = _load(O, rows, cols, s_o, mask) * r_o[:, None]
    lhat = _load(L, rows, cols, s_l, mask) * r_l[:, None]
    wg = tl.load(WG + cols, mask=cmask, other=0.0).to(tl.float32)  # per block: L1 hits, and fewer live registers
    wl = tl.load(WL + cols, mask=cmask, other=0.0).to(tl.float32)
    yo = ohat * wg[None, :]
    yl = lhat * wl[None, :]
    if OUT_SILU:  # through silu(b) of the blend b: silu'(b) = sig(b) * (1 + b * (1 - sig(b)))
        b = yl + s * (yo - yl)
        sb = tl.sigmoid(b)
        dout = dout * sb * (1.0 + b * (1.0 - sb))
    dgo = dout * s  # grad of the normed o branch
    dgl = dout - dgo  # grad of the normed local branch, dout * (1 - s)
    out_g = (dout * (yo - yl) * s * (1.0 - s))
    # rmsnorm backward on each branch: rstd * (g - x_hat * mean(g * x_hat)) with g = dy * w
    a = dgo * wg[None, :]
    d_o = (a - ohat * (tl.sum(a * ohat, axis=1) / D)[:, None]) * r_o[:, None]
    b = dgl * wl[None, :]
    d_l = (b - lhat * (tl.sum(b * lhat, axis=1) / D)[:, None]) * r_l[:, None]
    off = rows[:, None] * D + cols[None, :]
    tl.store(DO + off, d_o.to(DO.dtype.element_ty), mask=mask)
    tl.store(DL + off, d_l.to(DL.dtype.element_ty), mask=mask)
    tl.store(DG + off, out_g.to(DG.dtype.element_ty), mask=mask)
    return dgo * ohat, dgl * lhat


@triton.jit
def gate_bwd_kernel(O, L, G, WG, WL, DOUT, RSTD_O, RSTD_L, DO, DL, DG, DWG, DWL, M, D,
                    s_o, s_l, s_g, s_dout, OUT_SILU: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                    PERSISTENT: tl.constexpr = False):
    """PERSISTENT: each program walks row blocks pid, pid + programs, ... and sums its weight-grad products in
    [BLOCK_M, BLOCK_D] registers, reducing over rows once at the end (no per-block cross-warp sums, and a few
    hundred partial rows for torch to sum); else one row block per program."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    if PERSISTENT:
        acc_g = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        acc_l = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for blk in range(pid, tl.cdiv(M, BLOCK_M), tl.num_programs(0)):
            rows = (blk * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
            pg, pl = _bwd_rows(O, L, G, WG, WL, DOUT, RSTD_O, RSTD_L, DO, DL, DG, rows, cols, cmask, M, D,
                               s_o, s_l, s_g, s_dout, OUT_SILU)
            acc_g += pg
            acc_l += pl
    else:
        rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        acc_g, acc_l = _bwd_rows(O, L, G, WG, WL, DOUT, RSTD_O, RSTD_L, DO, DL, DG, rows, cols, cmask, M, D,
                                 s_o, s_l, s_g, s_dout, OUT_SILU)
    tl.store(DWG + pid * D + cols, tl.sum(acc_g, axis=0), mask=cmask)
    tl.store(DWL + pid * D + cols, tl.sum(acc_l, axis=0), mask=cmask)


def _rows_view(x):
    try:
        return x.view(-1, x.shape[-1]) if x.stride(-1) == 1 else None
    except RuntimeError:
        return None


def head_rows(*xs, split_heads=False):
    """The gate's inputs as [tokens, heads, D] tensors with heads D apart: [rows, 1, D] views where each input's
    rows are evenly spaced (one kernel for every shape) and not split_heads, else [..., H, D] as [tokens, H, D]
    with the tokens at any stride, so a column slice of a wider projection output is read in place; copied only
    where neither fits."""
    rows = [_rows_view(x) for x in xs]
    if not split_heads and all(r is not None for r in rows):
        return [r.unsqueeze(1) for r in rows]
    out = []
    for x in xs:
        x3 = x.flatten(0, -3) if x.dim() > 3 else x if x.dim() == 3 else as_rows(x).unsqueeze(1)
        out.append(x3 if x3.stride(-1) == 1 and x3.stride(-2) == x.shape[-1] else x3.contiguous())
    return out


def gate_forward(o, loc, gp, wg, wl, eps, out_silu, gp_bias=None):
    """(out shaped like o, r_o, r_l): the blend and the two norms' per-row rstd that the backward reuses.
    gp_bias [H * D] is added to the gate logits gp [..., H, D] in fp32, before the sigmoid."""
    o3, l3, g3 = head_rows(o, loc, gp, split_heads=gp_bias is not None)
    tokens, heads, D = o3.shape
    M = tokens * heads
    if M >= 2 ** 31:
        raise ValueError(f"gated_norm_blend: {M} head rows; at most 2**31 - 1 are supported")
    dtype = torch.promote_types(torch.promote_types(o.dtype, loc.dtype), gp.dtype)
    out = torch.empty((M, D), dtype=dtype, device=o.device)
    r_o = torch.empty(M, dtype=torch.float32, device=o.device)
    r_l = torch.empty_like(r_o)
    block_m, block_d, warps = _blocks(D, _TILE)
    bias = gp_bias.contiguous() if gp_bias is not None else wg  # wg: a valid pointer the kernel never reads
    gate_fwd_kernel[(cdiv(M, block_m),)](o3, l3, g3, bias, wg, wl, out, r_o, r_l, M, D, o3.stride(0),
                                         l3.stride(0), g3.stride(0), out.stride(0), eps, OUT_SILU=out_silu,
                                         HEADS=heads, HAS_BG=gp_bias is not None, BLOCK_M=block_m,
                                         BLOCK_D=block_d, num_warps=warps)
    return out.view(o.shape), r_o, r_l


def biased(gp, gp_bias):
    """gp + gp_bias over gp's last two dims ([H, D]), in gp's dtype: what the backward differentiates through."""
    return gp if gp_bias is None else gp + gp_bias.view(gp.shape[-2:] if gp.dim() > 2 else gp.shape[-1:]).to(gp.dtype)


def bias_grad(dgp, gp_bias):
    """The bias's gradient: dgp summed over every token, as gp_bias [H * D]."""
    return None if gp_bias is None else dgp.reshape(-1, gp_bias.numel()).float().sum(0).to(gp_bias.dtype)


def gate_backward(dout, o, loc, gp, wg, wl, r_o, r_l, out_silu):
    """(d o, d loc, d gp, d wg, d wl) of gate_forward, each shaped and typed like its input."""
    o2, l2, g2, d2 = as_rows(o), as_rows(loc), as_rows(gp), as_rows(dout)
    M, D = o2.shape
    do = torch.empty((M, D), dtype=o.dtype, device=o.device)
    dl = torch.empty((M, D), dtype=loc.dtype, device=o.device)
    dg = torch.empty((M, D), dtype=gp.dtype, device=o.device)
    block_m, block_d, warps = _blocks(D, BWD_TILE)
    grid = cdiv(M, block_m)
    if BWD_PROGRAMS_PER_SM:
        grid = min(grid, BWD_PROGRAMS_PER_SM * sm_count(o.device))
    dwg = torch.empty((grid, D), dtype=torch.float32, device=o.device)
    dwl = torch.empty_like(dwg)
    gate_bwd_kernel[(grid,)](o2, l2, g2, wg, wl, d2, r_o, r_l, do, dl, dg, dwg, dwl, M, D, o2.stride(0),
                             l2.stride(0), g2.stride(0), d2.stride(0), OUT_SILU=out_silu,
                             BLOCK_M=block_m, BLOCK_D=block_d, PERSISTENT=bool(BWD_PROGRAMS_PER_SM), num_warps=warps)
    return (do.view(o.shape), dl.view(loc.shape), dg.view(gp.shape), dwg.sum(0).to(wg.dtype),
            dwl.sum(0).to(wl.dtype))


class _FusedGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, o, loc, gp, wg, wl, eps, out_silu, gp_bias):
        out, r_o, r_l = gate_forward(o, loc, gp, wg, wl, eps, out_silu, gp_bias)
        ctx.save_for_backward(o, loc, gp, wg, wl, r_o, r_l, gp_bias)
        ctx.out_silu = out_silu
        return out

    @staticmethod
    def backward(ctx, dout):
        o, loc, gp, wg, wl, r_o, r_l, gp_bias = ctx.saved_tensors
        grads = gate_backward(dout, o, loc, biased(gp, gp_bias), wg, wl, r_o, r_l, ctx.out_silu)
        return (*grads, None, None, bias_grad(grads[2], gp_bias))


def check_gate_args(o, loc, gp, wg, wl, caller="gated_norm_blend_fused", gp_bias=None):
    """Shape checks; errors name `caller`, the function the user called."""
    if not (o.shape == loc.shape == gp.shape):
        raise ValueError(f"{caller}: o {tuple(o.shape)}, loc {tuple(loc.shape)} and gate "
                         f"{tuple(gp.shape)} must have one shape")
    D = o.shape[-1]
    if wg.shape != (D,) or wl.shape != (D,):
        raise ValueError(f"{caller}: norm weights {tuple(wg.shape)}, {tuple(wl.shape)} must be ({D},)")
    if D > MAX_NORM_DIM:
        raise ValueError(f"{caller}: last dim {D} > {MAX_NORM_DIM}")
    heads = gp.shape[-2] if gp.dim() > 2 else 1
    if gp_bias is not None and gp_bias.shape != (heads * D,):
        raise ValueError(f"{caller}: gate bias {tuple(gp_bias.shape)} must be ({heads * D},): one value per head "
                         f"and channel of the gate [..., {heads}, {D}]")


def gated_norm_blend_fused(o, loc, gp, wg, wl, eps, out_silu=False, gp_bias=None):
    """lerp(rmsnorm(loc) * wl, rmsnorm(o) * wg, sigmoid(gp + gp_bias)) over the last dim; o, loc, gp of one shape
    [..., H, D], gp_bias [H * D] or None.

    out_silu=True returns silu of that blend (ViG-T's out_act), still one kernel each way.
    """
    check_gate_args(o, loc, gp, wg, wl, gp_bias=gp_bias)
    return _FusedGate.apply(o, loc, gp, wg.contiguous(), wl.contiguous(), float(eps), bool(out_silu), gp_bias)
