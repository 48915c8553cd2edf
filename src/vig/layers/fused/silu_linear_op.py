"""silu_linear.py's kernel as the custom op vig::silu_linear, for inference in eager and compiled steps (no autograd:
training keeps the conv's SiLU module and the three projections; bigla_attn.merged_projections decides).

FLOPs: the GEMM's (2 per multiply-add), as the counter counts mm; the SiLU is not counted, as for the module it
replaces. Registering the op needs no triton.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor


def check_silu_linear_args(x, w):
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"silu_linear: x must be [rows, K] with unit column stride, got shape {tuple(x.shape)} "
                         f"strides {x.stride()}")
    if w.dim() != 2 or w.shape[1] != x.shape[1] or not w.is_contiguous():
        raise ValueError(f"silu_linear: w must be a contiguous [N, {x.shape[1]}] matrix, got {tuple(w.shape)}")
    if x.dtype not in (torch.bfloat16, torch.float16, torch.float32) or w.dtype != x.dtype:
        raise ValueError(f"silu_linear: x and w must share a compute dtype (bf16, fp16 or fp32), got {x.dtype} and "
                         f"{w.dtype}")


@custom_op("vig::silu_linear", mutates_args=())
def silu_linear(x: Tensor, w: Tensor) -> Tensor:
    """silu(x) [M, K] @ w^T -> [M, N] in x's dtype, contiguous (the merged projections of the conv's output)."""
    check_silu_linear_args(x, w)
    from vig.layers.fused.silu_linear import silu_linear_forward
    return silu_linear_forward(x, w)


@silu_linear.register_fake
def _(x, w):
    check_silu_linear_args(x, w)
    return x.new_empty((x.shape[0], w.shape[0]))


def _flops(x_shape, w_shape, *args, out_shape=None, **kwargs):
    return 2 * x_shape[0] * w_shape[0] * w_shape[1]


if torch.ops.vig.silu_linear not in flop_registry:
    register_flop_formula(torch.ops.vig.silu_linear)(_flops)
