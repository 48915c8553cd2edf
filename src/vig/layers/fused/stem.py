"""The V2 stem's first conv, its LayerNorm2d and its SiLU as one Triton kernel (inference).

The stem's first conv reads a 3-channel image with a large kernel and stride (k9 s8 at patch 16). On CUDA it ran
as conv_as_gemm (embed.py): the unfolded image written as [pixels, 248] bf16 columns and read back by cuBLAS, then
the conv's output written, read and written again by inductor's LayerNorm2d + SiLU kernel. On an H100 (ViG-T, bf16,
bs 256, session 36's kernel table) that took 0.159 (unfold) + 0.053 (GEMM) + 0.047 ms (norm) of a 5.19 ms inference
step, where reading the fp32 image once is ~0.05 ms. Here each program gathers its pixels' windows straight from
the image into tensor-core dots with the weight: a window row's inner columns are one aligned run that neighbouring
pixels continue, so they load as whole coalesced runs, and the rows' first columns as one more tile. Then it adds
the bias, normalizes over the output channels (all inside its tile), applies the SiLU and stores the pixels once,
channels last. H100: 0.128 against 0.269 ms for that path at ViG-T (stem_blocks).
"""
import os

import torch
import triton
import triton.language as tl

from vig.layers.fused.stem_op import stem_out_size
from vig.ops.bigla.triton._common import INTERPRET, _to_bf16, as_stored
from vig.ops.grid import cdiv, next_pow2


@triton.jit
def _window_dot(acc, rows, ih0, iw0, p_ok, r0, H, W, sxc, sxh, sxw, WT, rn, n_ok, R: tl.constexpr, KH: tl.constexpr,
                TAPS: tl.constexpr, WIDTH: tl.constexpr, N: tl.constexpr, IEEE: tl.constexpr):
    """acc += the image's window rows r0.. (row r: channel r // KH, kernel row r % KH) at TAPS adjacent columns from
    iw0, WIDTH // TAPS rows a tile, dotted with their weight rows WT[(r * TAPS + tap), N]."""
    j = tl.arange(0, WIDTH)
    r = r0 + j // TAPS
    ih = ih0[:, None] + (r % KH)[None, :]
    iw = iw0[:, None] + (j % TAPS)[None, :]
    ok = p_ok[:, None] & (r < R)[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    a = tl.load(rows[:, None] + (r // KH)[None, :] * sxc + ih * sxh + iw * sxw, mask=ok, other=0.0).to(tl.float32)
    w = tl.load(WT + (r0 * TAPS + j)[:, None] * N + rn[None, :], mask=(r < R)[:, None] & n_ok[None, :], other=0.0)
    # (if / else, not an early return: triton compiles the statements after a constexpr-true return too)
    if IEEE:
        acc = tl.dot(a, w.to(tl.float32), acc, input_precision="ieee")
    elif INTERPRET:  # the interpreter's bf16 dots multiply the stored bits: fp32 dots of bf16 values
        acc = tl.dot(_to_bf16(a), w.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(a.to(tl.bfloat16), w, acc)
    return acc


@triton.jit
def stem_fwd_kernel(X, WM, WE, BIAS, LN_W, LN_B, Y, H, W, Ho, Wo, n_pix, sxb, sxc, sxh, sxw, eps,
                    C: tl.constexpr, KH: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, N: tl.constexpr,
                    BN: tl.constexpr, BP: tl.constexpr, TW: tl.constexpr, RE: tl.constexpr, IEEE: tl.constexpr):
    """Y [n_pix, N] (NHWC rows of pixels (b, oh, ow)) = silu(LN(conv(X) + BIAS) * LN_W + LN_B) for the V2 stem's
    geometry: kernel (KH, SW + 1), stride (SH, SW), padding 1. Each window row splits into its first column and SW
    adjacent columns starting at ow * SW, which tile the image row: those are read as TW-wide tiles of whole
    SW-element runs (coalesced: neighbouring pixels' runs are neighbours in memory) against WM [C KH SW, N], and the
    first columns as one [BP, RE] tile against WE [C KH, N], both in the compute dtype (IEEE: fp32 dots)."""
    rp = tl.program_id(0) * BP + tl.arange(0, BP)
    p_ok = rp < n_pix
    b = rp // (Ho * Wo)
    q = rp % (Ho * Wo)
    ih0 = (q // Wo) * SH - 1
    iw0 = (q % Wo) * SW
    rows = X + b.to(tl.int64) * sxb
    rn = tl.arange(0, BN)
    n_ok = rn < N
    acc = tl.zeros([BP, BN], dtype=tl.float32)
    for r0 in range(0, C * KH, TW // SW):
        acc = _window_dot(acc, rows, ih0, iw0, p_ok, r0, H, W, sxc, sxh, sxw, WM, rn, n_ok, C * KH, KH, SW, TW, N,
                          IEEE)
    acc = _window_dot(acc, rows, ih0, iw0 - 1, p_ok, 0, H, W, sxc, sxh, sxw, WE, rn, n_ok, C * KH, KH, 1, RE, N, IEEE)
    x = acc + tl.load(BIAS + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    mean = tl.sum(tl.where(n_ok[None, :], x, 0.0), axis=1) / N
    d = tl.where(n_ok[None, :], x - mean[:, None], 0.0)
    inv = tl.rsqrt(tl.sum(d * d, axis=1) / N + eps)
    lw = tl.load(LN_W + rn, mask=n_ok, other=0.0).to(tl.float32)
    lb = tl.load(LN_B + rn, mask=n_ok, other=0.0).to(tl.float32)
    y = d * inv[:, None] * lw[None, :] + lb[None, :]
    y = y * tl.sigmoid(y)
    tl.store(Y + rp[:, None].to(tl.int64) * N + rn[None, :], as_stored(y, Y), mask=p_ok[:, None] & n_ok[None, :])


def stem_blocks(n: int):
    """(pixels a program, {num_warps, num_stages}) for n output channels. H100, bf16, bs 256, 224² (NOTES session 36,
    benchmarks/results/stem_h100_session36.json): 64 pixels on 4 warps, 3 stages, was the fastest launch at ViG-T's
    96 and ViG-S's 192 channels (0.128 / 0.196 ms against 0.147 / 0.209 on 8 warps; the plain path 0.269 / 0.310).
    ViG-B's 384 (untimed) take 32 pixels on 8 warps (ptxas, sm_90a: 128 registers; 64 pixels on 4 warps would hold
    a 256-value accumulator a thread). VIG_STEM_LAUNCH=pixels,warps,stages picks another (A/B)."""
    knob = os.environ.get("VIG_STEM_LAUNCH")
    if knob:
        try:
            bp, warps, stages = (int(v) for v in knob.split(","))
        except ValueError:
            raise ValueError(f"VIG_STEM_LAUNCH must be pixels,warps,stages (three ints), got {knob!r}") from None
        return bp, {"num_warps": warps, "num_stages": stages}
    if next_pow2(n) <= 256:
        return 64, {"num_warps": 4, "num_stages": 3}
    return 32, {"num_warps": 8, "num_stages": 3}


def stem_forward(x, wm, we, bias, ln_w, ln_b, kernel, stride, eps):
    """x [B, C, H, W] (any strides, any float dtype) -> [B, Ho, Wo, N] in wm's dtype (stem_weights' wm, we)."""
    B, C, H, W = x.shape
    (kh, _), (sh, sw) = kernel, stride
    ho, wo = stem_out_size(x.shape, kernel, stride)
    n = wm.shape[1]
    y = torch.empty(B, ho, wo, n, device=x.device, dtype=wm.dtype)
    n_pix = B * ho * wo
    if n_pix == 0:
        return y
    bp, launch = stem_blocks(n)
    stem_fwd_kernel[(cdiv(n_pix, bp),)](
        x, wm, we, bias, ln_w, ln_b, y, H, W, ho, wo, n_pix, *x.stride(), float(eps),
        C=C, KH=kh, SH=sh, SW=sw, N=n, BN=next_pow2(n), BP=bp, TW=max(16, sw), RE=max(16, next_pow2(C * kh)),
        IEEE=wm.dtype == torch.float32, **launch)
    return y
