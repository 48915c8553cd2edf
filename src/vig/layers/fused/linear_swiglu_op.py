"""gate_proj + SwiGLU (linear_swiglu.py) as the custom op vig::linear_swiglu, in eager steps and compiled ones.

Its backward is the op vig::linear_swiglu_dh (the recomputing kernel) and plain matmuls for dx and dw (dw summed over
row chunks in fp32: weight_grad), which torch.compile traces as usual. FLOPs: the forward counts as the projection it
replaces (2 M K 2N); the backward's recompute counts nothing, so a model's total is the plain path's (the count is
the model's work, not a kernel's).

Registering the ops needs no triton: the kernels' module is imported when an op first runs on a tensor.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

from vig.layers.fused import switched_on

Tensor = torch.Tensor


def check_linear_swiglu_args(x, w):
    if w.dim() != 2 or w.shape[0] % 2 or w.shape[1] != x.shape[-1]:
        raise ValueError(f"linear_swiglu: weight must be [2N, K] with K = x's last dim {x.shape[-1]}, "
                         f"got {tuple(w.shape)}")
    if x.dtype != w.dtype:
        raise ValueError(f"linear_swiglu: x is {x.dtype} but the weight is {w.dtype} (cast both to the compute dtype)")
    if not w.is_contiguous():
        raise ValueError("linear_swiglu: the weight must be contiguous")
    return w.shape[0] // 2


@custom_op("vig::linear_swiglu", mutates_args=())
def linear_swiglu(x: Tensor, w: Tensor) -> Tensor:
    """silu(x Wa^T) * (x Wb^T), [Wa; Wb] = w [2N, K]; x [..., K] -> [..., N]."""
    check_linear_swiglu_args(x, w)
    from vig.layers.fused.linear_swiglu import linear_swiglu_forward
    return linear_swiglu_forward(x, w)


@linear_swiglu.register_fake
def _(x, w):
    return x.new_empty((*x.shape[:-1], check_linear_swiglu_args(x, w)))


@custom_op("vig::linear_swiglu_dh", mutates_args=())
def linear_swiglu_dh(x: Tensor, w: Tensor, dy: Tensor) -> Tensor:
    """The gradient of h = x w^T given dy (linear_swiglu's output grad), h recomputed."""
    from vig.layers.fused.linear_swiglu import linear_swiglu_dh as dh_kernel
    return dh_kernel(x, w, dy)


@linear_swiglu_dh.register_fake
def _(x, w, dy):
    return x.new_empty((*x.shape[:-1], w.shape[0]))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    x, w = ctx.saved_tensors
    return _input_grads(ctx, x, w, linear_swiglu_dh(x, w, dy.to(x.dtype)))


# Rows a partial weight gradient sums on the tensor cores before the partials meet in fp32 (weight_grad): of 1,024 to
# 8,192, 8,192 timed fastest at five of the six ViG-T/S/B shapes timed (H100, session 49).
DW_CHUNK_ROWS = 8192
# Row counts that are a multiple of this take one matmul. On an H100 (session 51) cuBLAS's bf16 dh^T x was 0.0017 from
# float64 at every such count measured (25,088 to 50,208 rows, widths 192 / 384 / 768), better than the chunks' 0.0023
# and 0.04-0.11 ms faster a call alone (ViG-T's compiled training step was unchanged: 12,793 against 12,795 img/s);
# some other counts were 0.008-0.011 (25,091, 50,179 and 50,180 at width 192, 50,179 at 384), others fine. A model's
# rows are batch x tokens: 50,176 for ViG-T at bs 256, 224².
DW_ALIGNED_ROWS = 16


def weight_grad(dh2, x2, chunk_rows=None):
    """dh2^T x2 [N, K] over M rows: one matmul where M is a multiple of DW_ALIGNED_ROWS, else row chunks' partial
    products (rounded to the input dtype) summed in fp32.

    Why not always one matmul: on an H100 (torch 2.11, CUDA 13's cuBLAS) dh^T x in bf16 came out 0.008-0.011 from
    float64 in rel. RMSE at ViG-T's width (25,091 and 50,179 rows) and ViG-S's (50,179), whatever its output dtype or
    the reduced-precision-reduction switches, against 0.0017 for the same product in fp32; fp16 was as far off, so the
    error is cuBLAS's choice of kernel at those shapes, not the dtype. Plain F.linear's weight gradient is as far off
    (0.0086). Chunked, every bf16 width and count measured 0.0023-0.0024, at +0.06-0.09 ms a call at ViG-T's width
    (benchmarks/device/mlp_dw_precision.py; benchmarks/results/mlp_dw_{precision,chunked}_h100_session49.jsonl,
    mlp_dw_rows_h100_session51.jsonl for the aligned counts)."""
    chunk = chunk_rows or DW_CHUNK_ROWS
    rows = dh2.shape[0]
    if rows <= chunk or (chunk_rows is None and _one_matmul_is_accurate(rows)):
        return dh2.t() @ x2
    n = rows // chunk
    head = n * chunk
    parts = torch.bmm(dh2[:head].view(n, chunk, -1).transpose(1, 2), x2[:head].view(n, chunk, -1))
    dw = parts.sum(0, dtype=torch.promote_types(dh2.dtype, torch.float32))
    if head < rows:
        dw = dw + dh2[head:].t() @ x2[head:]
    return dw.to(dh2.dtype)


def _one_matmul_is_accurate(rows):
    """VIG_FUSED_OFF=dw_aligned_mm sums aligned counts in chunks too (A/B timings)."""
    return rows % DW_ALIGNED_ROWS == 0 and switched_on("dw_aligned_mm")


def _input_grads(ctx, x, w, dh):
    """(dx, dw) from h's gradient: plain matmuls, which torch.compile traces as usual."""
    dh2 = dh.reshape(-1, dh.shape[-1])
    dx = (dh2 @ w).view(x.shape) if ctx.needs_input_grad[0] else None
    dw = weight_grad(dh2, x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
    return dx, dw


linear_swiglu.register_autograd(_backward, setup_context=_setup_context)


def _fwd_flops(x_shape, w_shape, *args, out_shape=None, **kwargs):
    rows = 1
    for n in x_shape[:-1]:
        rows *= n
    return 2 * rows * w_shape[1] * w_shape[0]


def _dh_flops(*args, out_shape=None, **kwargs):
    return 0


for _packet, _formula in ((torch.ops.vig.linear_swiglu, _fwd_flops), (torch.ops.vig.linear_swiglu_dh, _dh_flops)):
    if _packet not in flop_registry:
        register_flop_formula(_packet)(_formula)
