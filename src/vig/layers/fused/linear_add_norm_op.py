"""linear_add_norm.py's kernel as the custom op vig::linear_add_rms_norm, for inference in eager and compiled steps (no
autograd: training keeps the projection, the add and the norm as they are; blocks.GLABlock decides).

On CPU tensors outside the interpreter the op computes the same in PyTorch (fp32 products), so the models' fused
wiring runs, and is tested, without a GPU. FLOPs: the GEMM's (2 per multiply-add), as the counter counts F.linear;
the add and the norm are not counted, as for the plain path. Registering the op needs no triton.
"""
import os

import torch
from torch.library import custom_op
from torch.utils.flop_counter import flop_registry, register_flop_formula

Tensor = torch.Tensor
MAX_DIM = 256  # one program holds BM whole rows of fp32 accumulators: ViG-T's 192 (ViG-S's 384 would spill)
COMPUTE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def check_linear_add_norm_args(a, w, x, norm_w):
    n = w.shape[0] if w.dim() == 2 else -1
    if w.dim() != 2 or w.shape[1] != a.shape[-1] or w.stride(-1) != 1:
        raise ValueError(f"linear_add_rms_norm: w must be [N, K] with unit column stride and K = a's last dim "
                         f"{a.shape[-1]}, got {tuple(w.shape)} (strides {w.stride()})")
    if not 0 < n <= MAX_DIM:
        raise ValueError(f"linear_add_rms_norm: the output width must be 1..{MAX_DIM} (whole rows in one program), "
                         f"got {n}")
    if x.shape != (*a.shape[:-1], n):
        raise ValueError(f"linear_add_rms_norm: x must be a's rows by w's {n} outputs, {[*a.shape[:-1], n]}, got "
                         f"{list(x.shape)}")
    if norm_w.shape != (n,) or not norm_w.is_contiguous():
        raise ValueError(f"linear_add_rms_norm: norm_w must be a contiguous [{n}] vector, got {tuple(norm_w.shape)}")
    if a.dtype not in COMPUTE_DTYPES or w.dtype != a.dtype:
        raise ValueError(f"linear_add_rms_norm: a and w must share a compute dtype (bf16, fp16 or fp32), got "
                         f"{a.dtype} and {w.dtype}")
    if not x.is_floating_point():
        raise ValueError(f"linear_add_rms_norm: x (the residual stream) must be floating point, got {x.dtype}")


def linear_add_rms_norm_reference(a, w, x, norm_w, eps):
    """The op in PyTorch: fp32 products of a and w's values, added to x before rounding."""
    with torch.autocast(a.device.type, enabled=False):  # a caller's autocast would round the product to bf16
        s = (x.float() + a.float() @ w.float().t()).to(x.dtype)
    sf = s.float()
    n = sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + eps) * norm_w.float()
    return s.contiguous(), n.to(a.dtype).contiguous()


@custom_op("vig::linear_add_rms_norm", mutates_args=())
def linear_add_rms_norm(a: Tensor, w: Tensor, x: Tensor, norm_w: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(s, n): s = x + a w^T in x's dtype, n = rmsnorm(s) * norm_w in a's dtype; a [..., K], w [N, K], x [..., N]."""
    check_linear_add_norm_args(a, w, x, norm_w)
    if not a.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        return linear_add_rms_norm_reference(a, w, x, norm_w, eps)
    from vig.layers.fused.linear_add_norm import linear_add_rms_norm_forward
    return linear_add_rms_norm_forward(a, w, x, norm_w, eps)


@linear_add_rms_norm.register_fake
def _(a, w, x, norm_w, eps):
    check_linear_add_norm_args(a, w, x, norm_w)
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(x.shape, dtype=a.dtype)


def _flops(a_shape, w_shape, *args, out_shape=None, **kwargs):
    rows = 1
    for d in a_shape[:-1]:
        rows *= d
    return 2 * rows * w_shape[0] * w_shape[1]


if torch.ops.vig.linear_add_rms_norm not in flop_registry:
    register_flop_formula(torch.ops.vig.linear_add_rms_norm)(_flops)
