"""The V2 stem's first conv, its LayerNorm2d and its SiLU as one Triton kernel (inference).

The stem's first conv reads a 3-channel image with a large kernel and stride (k9 s8 at patch 16). On CUDA it ran
as conv_as_gemm (embed.py): the unfolded image written as [pixels, 248] bf16 columns and read back by cuBLAS, then
the conv's output written, read and written again by inductor's LayerNorm2d + SiLU kernel. On an H100 (ViG-T, bf16,
bs 256, session 36's kernel table) that took 0.159 (unfold) + 0.053 (GEMM) + 0.047 ms (norm) of a 5.19 ms inference
step, where reading the fp32 image once is ~0.05 ms. Here each program gathers its pixels' windows straight from
the image, BK reduction columns at a time, into a tensor-core dot with the weight; then it adds the bias, normalizes
over the output channels (all inside its tile), applies the SiLU and stores the pixels once, channels last.
"""
import os

import torch
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import INTERPRET, _to_bf16
from vig.ops.grid import cdiv, next_pow2

BK = 32


@triton.jit
def stem_fwd_kernel(X, WT, BIAS, LN_W, LN_B, Y, H, W, Ho, Wo, n_pix, sxb, sxc, sxh, sxw, eps,
                    C: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                    PH: tl.constexpr, PW: tl.constexpr, N: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr,
                    BK: tl.constexpr, IEEE: tl.constexpr):
    """Y [n_pix, N] (NHWC rows of pixels (b, oh, ow)) = silu(LN(conv(X) + BIAS) * LN_W + LN_B); WT [C KH KW, N] is the
    conv weight flattened and transposed, in the compute dtype (IEEE: fp32 dots, else bf16 operands)."""
    rp = tl.program_id(0) * BP + tl.arange(0, BP)
    p_ok = rp < n_pix
    b = rp // (Ho * Wo)
    r = rp % (Ho * Wo)
    ih0 = (r // Wo) * SH - PH
    iw0 = (r % Wo) * SW - PW
    rows = X + b.to(tl.int64) * sxb
    rn = tl.arange(0, BN)
    n_ok = rn < N
    acc = tl.zeros([BP, BN], dtype=tl.float32)
    for k0 in range(0, C * KH * KW, BK):
        kk = k0 + tl.arange(0, BK)
        k_ok = kk < C * KH * KW
        c = kk // (KH * KW)
        kh = (kk // KW) % KH
        kw = kk % KW
        ih = ih0[:, None] + kh[None, :]
        iw = iw0[:, None] + kw[None, :]
        ok = p_ok[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(rows[:, None] + c[None, :] * sxc + ih * sxh + iw * sxw, mask=ok, other=0.0).to(tl.float32)
        w = tl.load(WT + kk[:, None] * N + rn[None, :], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if IEEE or INTERPRET:  # the interpreter's bf16 dots multiply the stored bits: fp32 dots of bf16 values
            a = a if IEEE else _to_bf16(a)
            acc = tl.dot(a, w.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a.to(tl.bfloat16), w, acc)
    x = acc + tl.load(BIAS + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    mean = tl.sum(tl.where(n_ok[None, :], x, 0.0), axis=1) / N
    d = tl.where(n_ok[None, :], x - mean[:, None], 0.0)
    inv = tl.rsqrt(tl.sum(d * d, axis=1) / N + eps)
    lw = tl.load(LN_W + rn, mask=n_ok, other=0.0).to(tl.float32)
    lb = tl.load(LN_B + rn, mask=n_ok, other=0.0).to(tl.float32)
    y = d * inv[:, None] * lw[None, :] + lb[None, :]
    y = y * tl.sigmoid(y)
    if INTERPRET and Y.dtype.element_ty == tl.bfloat16:  # the interpreter's casts truncate: round as the GPU does
        y = _to_bf16(y)
    tl.store(Y + rp[:, None].to(tl.int64) * N + rn[None, :], y.to(Y.dtype.element_ty),
             mask=p_ok[:, None] & n_ok[None, :])


def stem_blocks(n: int):
    """(pixels a program, {num_warps, num_stages}) for n output channels: the [pixels, channels] fp32 accumulator at
    ~32 values a thread. ptxas (sm_90a, triton 3.8) at ViG-T's 96 channels: 64 pixels on 4 warps took 243 registers
    (2 programs an SM), on 8 warps 136. Untimed; VIG_STEM_LAUNCH=pixels,warps,stages picks another (A/B)."""
    knob = os.environ.get("VIG_STEM_LAUNCH")
    if knob:
        try:
            bp, warps, stages = (int(v) for v in knob.split(","))
        except ValueError:
            raise ValueError(f"VIG_STEM_LAUNCH must be pixels,warps,stages (three ints), got {knob!r}") from None
        return bp, {"num_warps": warps, "num_stages": stages}
    warps = 8
    return max(16, min(64, 32 * 32 * warps // next_pow2(n))), {"num_warps": warps, "num_stages": 3}


def stem_forward(x, wt, bias, ln_w, ln_b, kernel, stride, padding, eps):
    """x [B, C, H, W] (any strides, any float dtype) -> [B, Ho, Wo, N] in wt's dtype; wt [C KH KW, N] contiguous."""
    B, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    n = wt.shape[1]
    y = torch.empty(B, ho, wo, n, device=x.device, dtype=wt.dtype)
    n_pix = B * ho * wo
    bp, launch = stem_blocks(n)
    stem_fwd_kernel[(cdiv(n_pix, bp),)](
        x, wt, bias, ln_w, ln_b, y, H, W, ho, wo, n_pix, *x.stride(), float(eps),
        C=C, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, N=n, BN=next_pow2(n), BP=bp, BK=BK,
        IEEE=wt.dtype == torch.float32, **launch)
    return y
