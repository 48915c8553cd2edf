"""bigla_packed with the gate logits given as their low-rank factors, for inference.

The mixer's gate projection is two linears, C -> R (R = 16) -> 2 H K. At inference the first runs inside the merged
input GEMM (layers/bigla_attn.merged_projections); here the second does not run at all: the seq forward forms each
tile's logits low @ W^T + b as it loads them (triton/_common.load_low_rank_gate), so the [B, T, 2 H K] logits are
never written or read. Where that kernel does not apply (long sequences, other backends, CPU) the logits are
materialized with one addmm and the usual op runs.

Forward only: with gradients the logits must exist for their own gradient, so a call that would record autograd
is refused. torch.compile sees the custom op vig::bigla_packed_low_rank (one node). Importing this module does not
import triton.
"""
import torch
from torch.library import custom_op

from vig.ops.bigla.packed import bigla_packed, check_packed, split_packed
from vig.ops.bigla.triton_call import _watched

Tensor = torch.Tensor


def low_rank_logits(low, weight, bias):
    """[g_fwd | g_bwd] logits low @ weight.T + bias in low's dtype (autocast's linear: both factors cast to it)."""
    return torch.addmm(bias.to(low.dtype), low.reshape(-1, low.shape[-1]), weight.t().to(low.dtype)).view(
        *low.shape[:-1], weight.shape[0])


def _forward(qkv, low, weight, bias, num_heads, head_k_dim, scale, gate_normalizer):
    from vig.ops.bigla.triton.launch import bigla_fwd_low_rank
    q, k, v, _, _ = split_packed(qkv, qkv[..., :2 * num_heads * head_k_dim], num_heads, head_k_dim)
    return bigla_fwd_low_rank(q, k, v, low, weight, bias, scale, gate_normalizer)


@custom_op("vig::bigla_packed_low_rank", mutates_args=())
def bigla_packed_low_rank_op(qkv: Tensor, low: Tensor, weight: Tensor, bias: Tensor, num_heads: int,
                             head_k_dim: int, scale: float, gate_normalizer: float) -> Tensor:
    return _forward(qkv, low, weight, bias, num_heads, head_k_dim, scale, gate_normalizer)


@bigla_packed_low_rank_op.register_fake
def _(qkv, low, weight, bias, num_heads, head_k_dim, scale, gate_normalizer):
    B, T, W = qkv.shape
    vd = W - 2 * num_heads * head_k_dim
    return qkv.new_empty((B, T, num_heads, vd // num_heads))


def check_low_rank(qkv, low, weight, bias, num_heads, head_k_dim, gate_logit_normalizer):
    """Errors that name the argument; bigla_packed's own checks run on qkv too."""
    kd = 2 * num_heads * head_k_dim
    for name, x in (("low", low), ("weight", weight), ("bias", bias)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"bigla_packed_low_rank: {name} must be a torch.Tensor, got {type(x).__name__}")
        if isinstance(qkv, torch.Tensor) and x.device != qkv.device:
            raise ValueError(f"bigla_packed_low_rank: {name} is on {x.device} but qkv is on {qkv.device}")
        if not x.is_floating_point():
            raise TypeError(f"bigla_packed_low_rank: {name} must be a floating tensor, got {x.dtype}")
    if low.dim() != 3:
        raise ValueError(f"bigla_packed_low_rank: low must be a [B, T, R] tensor, got {tuple(low.shape)}")
    check_packed(qkv, low.new_empty(low.shape[:2] + (kd,)), num_heads, head_k_dim)
    if gate_logit_normalizer is None:
        raise ValueError("bigla_packed_low_rank: the gates are logits, so gate_logit_normalizer is required")
    if weight.shape != (kd, low.shape[-1]):
        raise ValueError(f"bigla_packed_low_rank: weight must be [2 * num_heads * head_k_dim, R] = "
                         f"[{kd}, {low.shape[-1]}], got {tuple(weight.shape)}")
    if bias.shape != (kd,):
        raise ValueError(f"bigla_packed_low_rank: bias must be [{kd}], got {tuple(bias.shape)}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (qkv, low, weight, bias)):
        raise RuntimeError("bigla_packed_low_rank is forward only: call it under torch.no_grad() or "
                           "torch.inference_mode(), or train with bigla_packed on materialized gates")


def bigla_packed_low_rank(qkv, low, weight, bias, num_heads: int, head_k_dim: int, scale=None, *,
                          gate_logit_normalizer, backend="auto"):
    """bigla_packed(qkv, low @ weight.T + bias, ...) -> [B, T, H, V], without the logits in memory on the Triton
    backend's short-sequence walk (see the module docstring). No gradients."""
    from vig.ops.bigla import resolve_backend
    from vig.ops.bigla.validate import check_inputs
    check_low_rank(qkv, low, weight, bias, num_heads, head_k_dim, gate_logit_normalizer)
    # q and k stand in for the gates in bigla's checks: shapes and dtypes (the logits are low's dtype)
    q, _, v, _, _ = views = split_packed(qkv, qkv[..., :2 * num_heads * head_k_dim], num_heads, head_k_dim)
    normalizer = check_inputs(*views, scale, backend, False, gate_logit_normalizer)
    resolved = resolve_backend(backend, q.device, q.dtype, (q.shape[-1], v.shape[-1]))
    if resolved != "triton" or q.device.type != "cuda" or torch._C._are_functorch_transforms_active():
        return bigla_packed(qkv, low_rank_logits(low, weight, bias), num_heads, head_k_dim, scale, backend=backend,
                            gate_logit_normalizer=normalizer)
    scale = float(head_k_dim ** -0.5 if scale is None else scale)
    args = (qkv, low, weight, bias, num_heads, head_k_dim, scale, float(normalizer))
    return bigla_packed_low_rank_op(*args) if _watched() else _forward(*args)
