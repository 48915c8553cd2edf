"""low_rank.py's kernel as the custom op vig::low_rank_linear, for inference in eager and compiled steps (no autograd:
training keeps gk_proj's own layers; bigla_attn.merged_projections decides).

FLOPs: the GEMM's (2 per multiply-add), as the counter counts addmm; the bias is not counted, as for addmm.
Registering the op needs no triton.
"""
import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor
RANKS = (16, 32, 64)  # one dot's K: a power of two of at least 16 (ViG's gk_proj is 16 wide)


def check_low_rank_args(a, w, bias):
    r = a.shape[-1]
    if r not in RANKS:
        raise ValueError(f"low_rank_linear: the rank (a's last dim) must be one of {RANKS}, got {r}")
    if a.dim() != 2 or a.stride(-1) != 1:
        raise ValueError(f"low_rank_linear: a must be [rows, {r}] with unit column stride (any row stride: a column "
                         f"slice of a wider buffer), got shape {tuple(a.shape)} strides {a.stride()}")
    if w.dim() != 2 or w.shape[1] != r or not w.is_contiguous():
        raise ValueError(f"low_rank_linear: w must be a contiguous [N, {r}] matrix, got {tuple(w.shape)}")
    if bias.shape != (w.shape[0],) or not bias.is_contiguous():
        raise ValueError(f"low_rank_linear: bias must be a contiguous [{w.shape[0]}] vector, got {tuple(bias.shape)}")
    if a.dtype not in (torch.bfloat16, torch.float16, torch.float32) or w.dtype != a.dtype:
        raise ValueError(f"low_rank_linear: a and w must share a compute dtype (bf16, fp16 or fp32), got {a.dtype} "
                         f"and {w.dtype}")


@custom_op("vig::low_rank_linear", mutates_args=())
def low_rank_linear(a: Tensor, w: Tensor, bias: Tensor) -> Tensor:
    """a [M, R] @ w^T + bias -> [M, N] in a's dtype, contiguous (gk_proj's second layer)."""
    check_low_rank_args(a, w, bias)
    from vig.layers.fused.low_rank import low_rank_linear_forward
    return low_rank_linear_forward(a, w, bias)


@low_rank_linear.register_fake
def _(a, w, bias):
    check_low_rank_args(a, w, bias)
    return a.new_empty((a.shape[0], w.shape[0]))


def _flops(a_shape, w_shape, *args, out_shape=None, **kwargs):
    return 2 * a_shape[0] * w_shape[0] * w_shape[1]


if torch.ops.vig.low_rank_linear not in flop_registry:
    register_flop_formula(torch.ops.vig.low_rank_linear)(_flops)
