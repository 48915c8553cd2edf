"""The mixer's depthwise 3x3 conv (+ SiLU) on tokens [B, N, C] of an (h, w) grid, one Triton kernel forward.

cuDNN's depthwise kernels move ~4x the bytes they need (H200, ViG-T bf16: ~63 us for dgrad + wgrad); here a
program owns a tile of (flattened B*N positions, channels), reads its 3x3 neighbours straight from the token
layout as one [positions, 16 taps, channels] load (no NCHW transposes; masks at the image borders, so no
wrap-around across rows or images) and accumulates in fp32. Backward: one kernel recomputes the pre-activation
for silu' and accumulates the weight grad per program (reduced once, at its end, into per-program partials); the
input grad is the same conv with flipped taps, fused into that kernel without SiLU (it then only needs dy's
neighbours) and a second launch with it (it needs d_pre's neighbours).
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv, next_pow2

_TILE = 4096  # fp32 values per live [positions, 16 taps, channels] tile
_WARPS = 8
_GRAD_PROGRAMS = 1024  # enough to fill the GPU; each more program adds a [C, 9] fp32 partial to sum


@triton.jit
def _taps(P, b, n, row, col, c, sb, sn, H, W, pmask, cmask):
    """[positions, 16, channels] fp32: P[b, n + dr * W + dc, c] for the 3x3 taps t = 3 (dr + 1) + (dc + 1) < 9,
    zero where a tap leaves the image (the conv's padding) and for t >= 9 (padding to a power of two)."""
    t = tl.arange(0, 16)
    dr, dc = t // 3 - 1, t % 3 - 1
    r, q = row[:, None] + dr[None, :], col[:, None] + dc[None, :]
    inside = (t < 9)[None, :] & (r >= 0) & (r < H) & (q >= 0) & (q < W) & pmask[:, None]
    off = (b * sb + n * sn)[:, None] + (dr * W + dc)[None, :] * sn
    mask = inside[:, :, None] & cmask[None, None, :]
    return tl.load(P + off[:, :, None] + c[None, None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _tap_weights(Wt, c, cmask, FLIP: tl.constexpr):
    """[16, channels] fp32 weights of the taps (FLIP: the mirrored tap's, the transposed conv's), zero past 9."""
    t = tl.arange(0, 16)
    idx = 8 - t if FLIP else t
    mask = (t < 9)[:, None] & cmask[None, :]
    return tl.load(Wt + c[None, :] * 9 + idx[:, None], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _positions(block, N, W, M, BLOCK_P: tl.constexpr):
    p = block.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)  # B * N * C can pass 2^31
    n = p % N
    return p, p // N, n, n // W, n % W, p < M


@triton.jit
def _conv_kernel(X, Wt, Y, M, N, C, H, W, sb, sn, SILU: tl.constexpr, FLIP: tl.constexpr,
                 BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p, b, n, row, col, pmask = _positions(tl.program_id(0), N, W, M, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    w = _tap_weights(Wt, c, cmask, FLIP)
    y = tl.sum(_taps(X, b, n, row, col, c, sb, sn, H, W, pmask, cmask) * w[None, :, :], axis=1)
    if SILU:
        y = y * tl.sigmoid(y)
    tl.store(Y + p[:, None] * C + c[None, :], y.to(Y.dtype.element_ty), mask=pmask[:, None] & cmask[None, :])


@triton.jit
def _grad_kernel(X, DY, Wt, DPRE, DX, DW_PART, M, N, C, H, W, sb, sn, iters, SILU: tl.constexpr,
                 BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Over `iters` position blocks: dw partials [C, 9] of this program; d_pre (SILU) or dx (no SILU).
    The weight grad accumulates elementwise in a [positions, taps, channels] tile and is reduced once at the end:
    session 9's version reduced nine taps across the program's warps in every block, and its backward lost to
    cuDNN's by ~2 ms per ViG-T training step (session 10)."""
    pid = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    t = tl.arange(0, 16)
    if SILU:
        w = _tap_weights(Wt, c, cmask, False)
    else:
        w = _tap_weights(Wt, c, cmask, True)
    acc = tl.zeros((BLOCK_P, 16, BLOCK_C), tl.float32)
    for i in range(iters):
        p, b, n, row, col, pmask = _positions(pid * iters + i, N, W, M, BLOCK_P)
        mask = pmask[:, None] & cmask[None, :]
        dense = p[:, None] * C + c[None, :]
        g = tl.load(DY + dense, mask=mask, other=0.0).to(tl.float32)
        xt = _taps(X, b, n, row, col, c, sb, sn, H, W, pmask, cmask)
        if SILU:  # silu'(z) = s (1 + z (1 - s)), s = sigmoid(z), at z = the recomputed pre-activation
            pre = tl.sum(xt * w[None, :, :], axis=1)
            s = tl.sigmoid(pre)
            g = g * s * (1.0 + pre * (1.0 - s))
            tl.store(DPRE + dense, g, mask=mask)
        else:
            dx = tl.sum(_taps(DY, b, n, row, col, c, N * C, C, H, W, pmask, cmask) * w[None, :, :], axis=1)
            tl.store(DX + dense, dx.to(DX.dtype.element_ty), mask=mask)
        acc += g[:, None, :] * xt
    ptr = DW_PART + (pid * C + c[None, :]) * 9 + t[:, None]
    tl.store(ptr, tl.sum(acc, axis=0), mask=(t < 9)[:, None] & cmask[None, :])


def _blocks(C):
    block_c = min(64, next_pow2(C))
    return max(1, _TILE // (16 * block_c)), block_c


def _channels_dense(x):
    """x itself where its channel stride is 1 (any row stride), else a contiguous copy."""
    return x if x.stride(2) == 1 else x.contiguous()


def dwconv_forward(x, weight, h, w, silu):
    """act(depthwise conv3x3(x on the (h, w) grid, weight [C, 1, 3, 3])), padding 1: [B, N, C] contiguous."""
    x = _channels_dense(x)
    B, N, C = x.shape
    y = torch.empty((B, N, C), dtype=x.dtype, device=x.device)
    block_p, block_c = _blocks(C)
    if y.numel():
        _conv_kernel[(cdiv(B * N, block_p), cdiv(C, block_c))](
            x, weight.contiguous(), y, B * N, N, C, h, w, x.stride(0), x.stride(1), SILU=silu, FLIP=False,
            BLOCK_P=block_p, BLOCK_C=block_c, num_warps=_WARPS)
    return y


def dwconv_backward(dy, x, weight, h, w, silu):
    """(dx like x but contiguous, dw like weight) of dwconv_forward."""
    x, dy, weight = _channels_dense(x), dy.contiguous(), weight.contiguous()
    B, N, C = x.shape
    M = B * N
    block_p, block_c = _blocks(C)
    blocks, c_blocks = cdiv(M, block_p), cdiv(C, block_c)
    iters = max(1, blocks * c_blocks // _GRAD_PROGRAMS)
    programs = cdiv(blocks, iters)
    dx = torch.empty((B, N, C), dtype=x.dtype, device=x.device)
    # fp32: d_pre only feeds dx, which a bf16 d_pre would round twice (interpreter, bf16: 6.2e-3 vs 3.3e-3 rel. RMSE)
    d_pre = torch.empty((B, N, C), dtype=torch.float32, device=x.device) if silu else dx
    dw_part = torch.empty((programs, C, 9), dtype=torch.float32, device=x.device)
    if M and C:
        _grad_kernel[(programs, c_blocks)](x, dy, weight, d_pre, dx, dw_part, M, N, C, h, w, x.stride(0),
                                           x.stride(1), iters, SILU=silu, BLOCK_P=block_p, BLOCK_C=block_c,
                                           num_warps=_WARPS)
        if silu:
            _conv_kernel[(blocks, c_blocks)](d_pre, weight, dx, M, N, C, h, w, N * C, C, SILU=False, FLIP=True,
                                             BLOCK_P=block_p, BLOCK_C=block_c, num_warps=_WARPS)
    return dx, dw_part.sum(0).view(weight.shape).to(weight.dtype)
