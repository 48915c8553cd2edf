"""vig::linear_swiglu's two GEMMs as persistent, warp-specialized TMA kernels (sm_90, bf16 / fp16; the default
route there since session 42, VIG_LINEAR_SWIGLU_TMA=0 turns it off).

Each program walks output tiles (`tl.range(..., warp_specialize=True)`: a producer warp issues the TMA loads of x and
W tiles while the tensor-core warps consume them), and one [BM, BN] dot a K step covers both halves: W is read as
W' with its a / b rows interleaved (rows a_0, b_0, a_1, b_1, ...), so the accumulator's columns 2j, 2j+1 are a_j, b_j,
adjacent in every thread's registers, and split there. y (the forward) or dh's two halves (the backward) leave by TMA
stores. W' is formed per call (ViG-B: 6 MB, a few us against a ~0.5 ms GEMM). Reading W in place as its two halves,
two dots a K step, was slower in session 43 (H100, bf16, bs 256: inference ViG-T 51,382 against 51,955 img/s, ViG-S
24,315 against 25,764, ViG-B 9,212 against 10,175; the forward alone 0.067 against 0.062 ms at ViG-T's 256 x 128
launch, 0.712 against 0.453 at ViG-B's) and was removed.

Why: the block-grid kernels (linear_swiglu.py) run ViG-B's forward at ~540 TFLOPS where cuBLAS runs DeiT-B's GEMMs at
~700 on an H100 (session 41's kernel tables). Session 42 (H100, bf16, 50,176 rows; benchmarks/probe_tma_ws_mlp.py,
probe_tma_ws_mlp_h100_session42.json), forward / dh ms against the block grid's: ViG-T 0.062 / 0.103 against
0.071 / 0.096, ViG-S 0.152 / 0.217 against 0.187 / 0.321, ViG-B 0.462 / 0.599 against 0.592 / 0.848 (cuBLAS's
GEMM alone: 0.051 / 0.133 / 0.439). Models, bs 256, 224², CUDA graphs, each in its own process: inference ViG-T
50,939 against 49,274 img/s, ViG-S 25,297 against 24,445, ViG-B 9,894 against 9,340.
"""
import functools
import inspect

import torch
import triton
import triton.language as tl

from vig.layers.fused import sm90
from vig.ops.bigla.triton._common import INTERPRET, dot_acc
from vig.ops.grid import cdiv, sm_count

# (BM, BN over both halves, BK, warps, stages, warp-specialized), session 42's sweep of six launches: the forward's is
# the fastest at ViG-T/S/B, dh's at ViG-S (0.217 ms against 256 x 128's 0.227; at ViG-B 0.599 against its 0.586)
FWD_LAUNCH = (256, 128, 64, 8, 3, True)
DH_LAUNCH = (128, 256, 64, 8, 3, True)
INTERPRETER_LAUNCH = (32, 32, 16, 4, 2, True)  # CPU tests: small tiles, so that rows, columns and K leave partial ones


@triton.jit
def _tile_pair(x_desc, w_desc, tile, n_n, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """(a, b, row, column) of one output tile: the fp32 [BM, BN / 2] halves and the tile's first row and column
    in y, from one dot a K step over W' (interleaved), whose column pairs split in registers. The column tiles of
    one row tile are adjacent tiles, so their x rows meet in L2."""
    pm = tile // n_n
    pn = tile % n_n
    acc = tl.zeros([BM, BN], tl.float32)
    for k0 in range(0, K, BK):
        acc = dot_acc(x_desc.load([pm * BM, k0]), w_desc.load([pn * BN, k0]).T, acc, False)
    a, b = tl.split(tl.reshape(acc, [BM, BN // 2, 2]))
    return a, b, pm * BM, pn * (BN // 2)


@triton.jit
def linear_swiglu_tma_fwd_kernel(x_desc, w_desc, y_desc, M, N2, K, BM: tl.constexpr, BN: tl.constexpr,
                                 BK: tl.constexpr, PROGRAMS: tl.constexpr, WS: tl.constexpr):
    n_n = tl.cdiv(N2, BN)
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BM) * n_n, PROGRAMS, flatten=True, warp_specialize=WS):
        a, b, row, col = _tile_pair(x_desc, w_desc, tile, n_n, K, BM, BN, BK)
        y_desc.store([row, col], (a * tl.sigmoid(a) * b).to(y_desc.dtype))


@triton.jit
def linear_swiglu_tma_dh_kernel(x_desc, w_desc, dy_desc, dha_desc, dhb_desc, M, N2, K, BM: tl.constexpr,
                                BN: tl.constexpr, BK: tl.constexpr, PROGRAMS: tl.constexpr, WS: tl.constexpr):
    n_n = tl.cdiv(N2, BN)
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BM) * n_n, PROGRAMS, flatten=True, warp_specialize=WS):
        a, b, row, col = _tile_pair(x_desc, w_desc, tile, n_n, K, BM, BN, BK)
        d = dy_desc.load([row, col]).to(tl.float32)
        s = tl.sigmoid(a)
        dha_desc.store([row, col], (d * b * s * (1.0 + a * (1.0 - s))).to(dha_desc.dtype))
        dhb_desc.store([row, col], (d * a * s).to(dhb_desc.dtype))


def interleave(w):
    """[Wa; Wb] ([2N, K]) -> W' with rows a_0, b_0, a_1, b_1, ..."""
    n = w.shape[0] // 2
    return torch.stack((w[:n], w[n:]), dim=1).reshape(w.shape)


@functools.lru_cache(maxsize=None)
def triton_has_tma_ws() -> bool:
    """Host-side tensor descriptors and tl.range's warp_specialize: triton 3.4+ has both (3.3.1 neither); without
    them the block grid runs. The kernels are tested under triton 3.6 (GPU, sm_90a) and 3.8 (interpreter)."""
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401
    except ImportError:
        return False
    return "warp_specialize" in inspect.signature(tl.range.__init__).parameters


def runs_on(device) -> bool:
    """Whether the TMA kernels run on `device` with this triton: one with the features, and an sm_90 GPU (where
    they were measured) or the interpreter."""
    return triton_has_tma_ws() and (INTERPRET or (device.type == "cuda" and sm90(device)))


def usable(*tensors) -> bool:
    """Whether the TMA kernels can describe these row-major [rows, D] operands (x, dy): half dtypes (fp32 keeps the
    block grid's full-precision dots), on a device they run on (runs_on), 16-byte aligned rows and bases."""
    if not all(t.dtype in (torch.bfloat16, torch.float16) and runs_on(t.device) for t in tensors):
        return False
    return all(t.stride(-1) == 1 and (t.stride(0) * t.element_size()) % 16 == 0 and t.data_ptr() % 16 == 0
               for t in tensors)


def _desc(t, block):
    from triton.tools.tensor_descriptor import TensorDescriptor
    return TensorDescriptor.from_tensor(t, list(block))


def _default(launch):
    return INTERPRETER_LAUNCH if INTERPRET else launch


def _launch(kernel, x2, w, io, launch):
    """kernel over x2's rows and W's interleaved copy; io: its other tensors, each described in [BM, BN / 2] half
    tiles (y; or dy and dh's two halves). A persistent grid: one program an SM, fewer if there are fewer tiles."""
    bm, bn, bk, warps, stages, ws = launch
    M, K = x2.shape
    programs = max(1, min(sm_count(x2.device), cdiv(M, bm) * cdiv(w.shape[0], bn)))
    descs = [_desc(t, (bm, bn // 2)) for t in io]
    kernel[(programs,)](_desc(x2, (bm, bk)), _desc(interleave(w), (bn, bk)), *descs, M, w.shape[0], K,
                        BM=bm, BN=bn, BK=bk, PROGRAMS=programs, WS=ws, num_warps=warps, num_stages=stages)


def forward(x2, w, launch=None):
    """silu(x Wa^T) * (x Wb^T) for row-major x2 [M, K] and w = [Wa; Wb] [2N, K]."""
    y = torch.empty(x2.shape[0], w.shape[0] // 2, device=x2.device, dtype=x2.dtype)
    _launch(linear_swiglu_tma_fwd_kernel, x2, w, (y,), launch or _default(FWD_LAUNCH))
    return y


def dh(x2, w, dy2, launch=None):
    """The gradient of h = x2 w^T ([M, 2N]: dh_a | dh_b) given dy2, the gradient of forward's output."""
    N = w.shape[0] // 2
    out = torch.empty(x2.shape[0], 2 * N, device=x2.device, dtype=x2.dtype)
    _launch(linear_swiglu_tma_dh_kernel, x2, w, (dy2, out[:, :N], out[:, N:]), launch or _default(DH_LAUNCH))
    return out
