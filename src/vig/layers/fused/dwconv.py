"""The mixer's depthwise 3x3 conv (+ SiLU) on channel-last tokens, in Triton: x [M, C] rows are the tokens of
B images of h x w, raster order, zero padding 1, no bias.

Every output tile reads its nine shifted input tiles straight from the token rows (neighbouring tiles overlap, so
the shifted reads hit L1 / L2): one pass over x and one over y, where cuDNN's channels-last kernels took ~4x their
traffic floor and inductor's SiLU was a pass of its own (benchmarks/NOTES_bigla.md, sessions 17-19). Sessions 10
and 17 tried Triton versions that tiled over taps (a [positions, 16 taps, channels] tile, reduced across warps)
and lost 10-20x; these tiles are plain [positions, channels] blocks, one tap at a time.

The backward takes two launches: dz = dy * silu'(z) with z recomputed from x (not saved: x is read for the weight
gradient anyway), written once in fp32, with each program's weight-gradient partial sums; then dx as the flipped
conv of dz, the forward's kernel. Without the SiLU (ViG-S / ViG-B) dz is dy: nothing is written and dx reads dy. A
last sum over the programs' partials gives dw.
"""
import torch
import triton
import triton.language as tl

from vig.ops.grid import cdiv

# token rows x channels per tile, on BLOCK_P / 8 warps: 16 fp32 values per thread. ptxas (triton 3.8, sm_90a, C a
# multiple of 64): the conv 118 registers and 968 instructions, dx over fp32 dz 156 / 632; 64 rows on 4 warps took
# 182 / 192
BLOCK_P, BLOCK_C = 32, 64
# the weight-gradient launch: 16-row tiles on 4 warps (8 values a thread) keep nine [16, 64] fp32 accumulators of
# x(tap) * dz across the program's tiles, summed over rows once at its end: 183 registers, 762 instructions a tile
# (95 a value) against 2,403 (150 a value) for nine row sums per 32-row tile; persistent, 2 programs an SM (its
# nine fp32 weight vectors are loop-invariant, 72 registers)
GRAD_BLOCK_P, GRAD_WARPS, PROGRAMS_PER_SM = 16, 4, 2


@triton.jit
def _tap_tile(X, m, c, tap: tl.constexpr, hh, ww, M, C, HT, WT, EVEN_C: tl.constexpr):
    """x at the neighbour (tap // 3 - 1, tap % 3 - 1) of each token row m (zero outside its image), fp32 [P, C].
    EVEN_C (C a multiple of the channel tile, as in every ViG): no channel mask, 5-8% fewer instructions a kernel."""
    dh = tap // 3 - 1
    dw = tap % 3 - 1
    ok = (m < M) & (hh + dh >= 0) & (hh + dh < HT) & (ww + dw >= 0) & (ww + dw < WT)
    rows = m + dh * WT + dw
    mask = ok[:, None] if EVEN_C else ok[:, None] & (c < C)[None, :]
    return tl.load(X + rows[:, None] * C + c[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _grid_pos(m, HT, WT):
    """(row, column) of token rows m in their image; 32-bit, as a 64-bit remainder is a software division (73
    instructions, called per row)."""
    hw = m.to(tl.int32) % (HT * WT)
    return hw // WT, hw % WT


@triton.jit
def _conv_tile(X, Wt, m, c, hh, ww, M, C, HT, WT, FLIP: tl.constexpr, EVEN_C: tl.constexpr):
    """sum over the nine taps of x(tap) * w[tap, c] (FLIP: w[8 - tap, c], the transposed conv), fp32 [P, C];
    Wt: the fp32 weights as [9, C] rows, so a tap's weights are one vector load."""
    acc = tl.zeros((m.shape[0], c.shape[0]), dtype=tl.float32)
    for tap in tl.static_range(9):
        w_tap = 8 - tap if FLIP else tap
        if EVEN_C:
            wv = tl.load(Wt + w_tap * C + c)
        else:
            wv = tl.load(Wt + w_tap * C + c, mask=c < C, other=0.0)
        acc += _tap_tile(X, m, c, tap, hh, ww, M, C, HT, WT, EVEN_C) * wv[None, :]
    return acc


@triton.jit
def _conv_kernel(X, Wt, Y, M, C, HT, WT, ACT: tl.constexpr, FLIP: tl.constexpr, BP: tl.constexpr,
                 BC: tl.constexpr, EVEN_C: tl.constexpr):
    m = tl.program_id(0).to(tl.int64) * BP + tl.arange(0, BP)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    hh, ww = _grid_pos(m, HT, WT)
    z = _conv_tile(X, Wt, m, c, hh, ww, M, C, HT, WT, FLIP, EVEN_C)
    if ACT:
        z = z * tl.sigmoid(z)
    tl.store(Y + m[:, None] * C + c[None, :], z.to(Y.dtype.element_ty), mask=(m < M)[:, None] & (c < C)[None, :])


@triton.jit
def _tap_prod(X, m, c, tap: tl.constexpr, hh, ww, M, C, HT, WT, EVEN_C: tl.constexpr, dz):
    """x(tap) * dz, fp32 [P, C]: one term of the weight gradient's nine sums."""
    return _tap_tile(X, m, c, tap, hh, ww, M, C, HT, WT, EVEN_C) * dz


@triton.jit
def _grad_kernel(X, Wt, DY, DZ, DW_PART, M, C, HT, WT, ACT: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr,
                 EVEN_C: tl.constexpr):
    """dz of each token tile (ACT: through the SiLU at the recomputed z), and this program's sums of
    x(tap) * dz over its tiles, written as its row of DW_PART [programs, 9, C]. The nine accumulators are named,
    not one [9, BP, BC] tile: a loop-carried tile would need a select per tap to update one slice."""
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    a0 = tl.zeros((BP, BC), dtype=tl.float32)
    a1 = tl.zeros((BP, BC), dtype=tl.float32)
    a2 = tl.zeros((BP, BC), dtype=tl.float32)
    a3 = tl.zeros((BP, BC), dtype=tl.float32)
    a4 = tl.zeros((BP, BC), dtype=tl.float32)
    a5 = tl.zeros((BP, BC), dtype=tl.float32)
    a6 = tl.zeros((BP, BC), dtype=tl.float32)
    a7 = tl.zeros((BP, BC), dtype=tl.float32)
    a8 = tl.zeros((BP, BC), dtype=tl.float32)
    for tile in range(tl.program_id(0), tl.cdiv(M, BP), tl.num_programs(0)):
        m = tile * BP + tl.arange(0, BP).to(tl.int64)
        mask = (m < M)[:, None] & (c < C)[None, :]
        dz = tl.load(DY + m[:, None] * C + c[None, :], mask=mask, other=0.0).to(tl.float32)
        hh, ww = _grid_pos(m, HT, WT)
        if ACT:  # without the SiLU dz is dy itself, which dx reads in place
            z = _conv_tile(X, Wt, m, c, hh, ww, M, C, HT, WT, False, EVEN_C)
            s = tl.sigmoid(z)
            dz = dz * s * (1.0 + z * (1.0 - s))
            tl.store(DZ + m[:, None] * C + c[None, :], dz, mask=mask)
        a0 += _tap_prod(X, m, c, 0, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a1 += _tap_prod(X, m, c, 1, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a2 += _tap_prod(X, m, c, 2, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a3 += _tap_prod(X, m, c, 3, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a4 += _tap_prod(X, m, c, 4, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a5 += _tap_prod(X, m, c, 5, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a6 += _tap_prod(X, m, c, 6, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a7 += _tap_prod(X, m, c, 7, hh, ww, M, C, HT, WT, EVEN_C, dz)
        a8 += _tap_prod(X, m, c, 8, hh, ww, M, C, HT, WT, EVEN_C, dz)
    out = DW_PART + tl.program_id(0) * 9 * C + c
    cm = c < C
    tl.store(out, tl.sum(a0, axis=0), mask=cm)
    tl.store(out + C, tl.sum(a1, axis=0), mask=cm)
    tl.store(out + 2 * C, tl.sum(a2, axis=0), mask=cm)
    tl.store(out + 3 * C, tl.sum(a3, axis=0), mask=cm)
    tl.store(out + 4 * C, tl.sum(a4, axis=0), mask=cm)
    tl.store(out + 5 * C, tl.sum(a5, axis=0), mask=cm)
    tl.store(out + 6 * C, tl.sum(a6, axis=0), mask=cm)
    tl.store(out + 7 * C, tl.sum(a7, axis=0), mask=cm)
    tl.store(out + 8 * C, tl.sum(a8, axis=0), mask=cm)


def _warps():
    return max(1, BLOCK_P // 8)


def _conv(x, w9, hw, act, flip, out_dtype):
    M, C = x.shape
    y = torch.empty((M, C), dtype=out_dtype, device=x.device)
    grid = (cdiv(M, BLOCK_P), cdiv(C, BLOCK_C))
    _conv_kernel[grid](x, w9, y, M, C, hw[0], hw[1], ACT=act, FLIP=flip, BP=BLOCK_P, BC=BLOCK_C,
                       EVEN_C=C % BLOCK_C == 0, num_warps=_warps())
    return y


def _tap_rows(weight):
    """[C, 1, 3, 3] -> fp32 [9, C] (one copy kernel): each tap's weights contiguous. Read in place, with stride 9,
    they took 72 scalar loads and as many conversions a thread in the conv kernel."""
    C = weight.shape[0]
    return torch.empty((9, C), dtype=torch.float32, device=weight.device).copy_(weight.reshape(C, 9).t())


def dwconv_forward(x, weight, hw, act):
    """x [M, C] contiguous token rows, weight [C, 1, 3, 3] -> [M, C] in x's dtype (SiLU'd with act)."""
    return _conv(x, _tap_rows(weight), hw, act, False, x.dtype)


def dwconv_backward(x, weight, dy, hw, act):
    """(dx, dw) of dwconv_forward(x, weight, hw, act) given dy; dw in weight's dtype and shape."""
    M, C = x.shape
    w9 = _tap_rows(weight)
    dy = dy.contiguous()
    # fp32: a bf16 dz (what inductor's SiLU backward hands cuDNN's dgrad) put bf16 dx at ~6e-3 relative RMSE
    dz = torch.empty(x.shape, dtype=torch.float32, device=x.device) if act else dy
    # on CPU (the interpreter) one program per channel block walks every tile: the tests reach the loop that way
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1
    channel_blocks = cdiv(C, BLOCK_C)
    programs = max(1, min(cdiv(M, GRAD_BLOCK_P), cdiv(PROGRAMS_PER_SM * sms, channel_blocks)))
    part = torch.empty((programs, 9, C), dtype=torch.float32, device=x.device)
    _grad_kernel[(programs, channel_blocks)](x, w9, dy, dz, part, M, C, hw[0], hw[1], ACT=act, BP=GRAD_BLOCK_P,
                                             BC=BLOCK_C, EVEN_C=C % BLOCK_C == 0, num_warps=GRAD_WARPS)
    dx = _conv(dz, w9, hw, False, True, x.dtype)
    # contiguous, as the backward op's fake says: the transposed view's strides broke inductor's stride asserts
    dw = part.sum(0).t().to(weight.dtype).contiguous().reshape(weight.shape)
    return dx, dw
