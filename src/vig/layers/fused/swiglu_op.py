"""The fused SwiGLU (swiglu.py) as the custom op vig::swiglu, so torch.compile calls our two kernels. Inductor's
own backward for silu(a) * b (a cat of the two halves' gradients) ran at 2.7 TB/s against our kernel's 4.0-4.2
(H200, bf16, ViG-T / ViG-B training shapes: 95 against 64 us, 367 against 243 us;
benchmarks/bench_fused_layers.py); inductor's forward was already near copy bandwidth (~3.9 TB/s in
ViG-T's compiled training profile), ours was not timed alone.

Registering the op needs no triton: the kernels' module is imported when the op first runs on a tensor.
"""
import torch
from torch.library import custom_op

Tensor = torch.Tensor


def check_swiglu_args(h, dim, caller="swiglu_fused"):
    """dim normalised to >= 0; errors name `caller`, the function the user called."""
    dim = dim % h.dim()
    if h.shape[dim] % 2:
        raise ValueError(f"{caller}: size {h.shape[dim]} of dim {dim} is odd, cannot split in two halves")
    if not h.is_contiguous():
        raise ValueError(f"{caller}: input must be contiguous (the kernel indexes [outer, 2, inner])")
    return dim


@custom_op("vig::swiglu", mutates_args=())
def swiglu_op(h: Tensor, dim: int) -> Tensor:
    """silu(a) * b with [a | b] = h split in two along dim (h contiguous)."""
    dim = check_swiglu_args(h, dim, "swiglu")
    from vig.layers.fused.swiglu import swiglu_forward
    return swiglu_forward(h, dim)


@swiglu_op.register_fake
def _(h, dim):
    shape = list(h.shape)
    shape[check_swiglu_args(h, dim, "swiglu")] //= 2
    return h.new_empty(shape)


@custom_op("vig::swiglu_backward", mutates_args=())
def swiglu_backward_op(h: Tensor, dout: Tensor, dim: int) -> Tensor:
    from vig.layers.fused.swiglu import swiglu_backward
    return swiglu_backward(h, dout, dim % h.dim())


@swiglu_backward_op.register_fake
def _(h, dout, dim):
    return torch.empty_like(h, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    h, dim = inputs
    ctx.save_for_backward(h)
    ctx.dim = dim


def _backward(ctx, dout):
    (h,) = ctx.saved_tensors
    return swiglu_backward_op(h, dout, ctx.dim), None


swiglu_op.register_autograd(_backward, setup_context=_setup_context)
