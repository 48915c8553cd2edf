"""The mixer's depthwise 3x3 conv (+ SiLU) on tokens [B, N, C] of an (h, w) grid, one Triton kernel forward.

cuDNN's depthwise kernels move ~4x the bytes they need (H200, ViG-T bf16: ~63 us for dgrad + wgrad); here a
program owns a tile of (flattened B*N positions, channels), reads its 3x3 neighbours straight from the token
layout (no NCHW transposes; masks at the image borders, so no wrap-around across rows or images) and
accumulates in fp32. Backward: one kernel recomputes the pre-activation for silu' and reduces the weight
grad into per-program partials; the input grad is the same conv with flipped taps, fused into that kernel
without SiLU (it then only needs dy's neighbours) and a second launch with it (it needs d_pre's neighbours).
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv, next_pow2

_TILE = 2048  # fp32 values per live tile
# ptxas, sm_90, bf16, C % 16 == 0: the backward kernel takes 139 registers a thread with 4 warps, 80 with 8 (no spills)
_WARPS = 8
_GRAD_PROGRAMS = 1024  # enough to fill the GPU; each more program adds a [C, 9] fp32 partial to sum


@triton.jit
def _tap(P, b, n, row, col, c, sb, sn, H, W, DR: tl.constexpr, DC: tl.constexpr, mask):
    """P[b, n + DR * W + DC, c] as fp32, zero where (row + DR, col + DC) leaves the image (the conv's padding)."""
    r, q = row + DR, col + DC
    inside = (r >= 0) & (r < H) & (q >= 0) & (q < W)
    ptr = P + (b * sb + (n + DR * W + DC) * sn)[:, None] + c[None, :]
    return tl.load(ptr, mask=mask & inside[:, None], other=0.0).to(tl.float32)


@triton.jit
def _positions(block, N, W, M, BLOCK_P: tl.constexpr):
    p = block.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)  # B * N * C can pass 2^31
    n = p % N
    return p, p // N, n, n // W, n % W, p < M


@triton.jit
def _conv(P, Wt, b, n, row, col, c, sb, sn, H, W, mask, cmask, FLIP: tl.constexpr, BLOCK_P: tl.constexpr,
          BLOCK_C: tl.constexpr):
    """sum over taps of P's neighbour * weight; FLIP takes the mirrored tap's weight (the transposed conv)."""
    acc = tl.zeros((BLOCK_P, BLOCK_C), tl.float32)
    for t in tl.static_range(9):
        wt = tl.load(Wt + c * 9 + (8 - t if FLIP else t), mask=cmask, other=0.0).to(tl.float32)
        acc += _tap(P, b, n, row, col, c, sb, sn, H, W, t // 3 - 1, t % 3 - 1, mask) * wt[None, :]
    return acc


@triton.jit
def _conv_kernel(X, Wt, Y, M, N, C, H, W, sb, sn, SILU: tl.constexpr, FLIP: tl.constexpr,
                 BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p, b, n, row, col, pmask = _positions(tl.program_id(0), N, W, M, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    mask = pmask[:, None] & cmask[None, :]
    y = _conv(X, Wt, b, n, row, col, c, sb, sn, H, W, mask, cmask, FLIP, BLOCK_P, BLOCK_C)
    if SILU:
        y = y * tl.sigmoid(y)
    tl.store(Y + p[:, None] * C + c[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _grad_kernel(X, DY, Wt, DPRE, DX, DW_PART, M, N, C, H, W, sb, sn, iters, SILU: tl.constexpr,
                 BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Over `iters` position blocks: dw partials [C, 9] of this program; d_pre (SILU) or dx (no SILU)."""
    pid = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    taps = tl.arange(0, 16)
    dw = tl.zeros((16, BLOCK_C), tl.float32)  # row t: this program's sum of d_pre * (x's neighbour at tap t)
    for i in range(iters):
        p, b, n, row, col, pmask = _positions(pid * iters + i, N, W, M, BLOCK_P)
        mask = pmask[:, None] & cmask[None, :]
        dense = p[:, None] * C + c[None, :]
        g = tl.load(DY + dense, mask=mask, other=0.0).to(tl.float32)
        if SILU:  # silu'(z) = s (1 + z (1 - s)), s = sigmoid(z), at z = the recomputed pre-activation
            pre = _conv(X, Wt, b, n, row, col, c, sb, sn, H, W, mask, cmask, False, BLOCK_P, BLOCK_C)
            s = tl.sigmoid(pre)
            g = g * s * (1.0 + pre * (1.0 - s))
            tl.store(DPRE + dense, g, mask=mask)
        else:
            dx = _conv(DY, Wt, b, n, row, col, c, N * C, C, H, W, mask, cmask, True, BLOCK_P, BLOCK_C)
            tl.store(DX + dense, dx.to(DX.dtype.element_ty), mask=mask)
        for t in tl.static_range(9):
            part = tl.sum(g * _tap(X, b, n, row, col, c, sb, sn, H, W, t // 3 - 1, t % 3 - 1, mask), axis=0)
            dw += tl.where(taps[:, None] == t, part[None, :], 0.0)
    ptr = DW_PART + (pid * C + c[None, :]) * 9 + taps[:, None]
    tl.store(ptr, dw, mask=(taps < 9)[:, None] & cmask[None, :])


def _blocks(C):
    block_c = min(64, next_pow2(C))
    return _TILE // block_c, block_c


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
