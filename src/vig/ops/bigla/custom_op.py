"""BiGLA as one torch.library custom op, so torch.compile sees a single opaque node.

torch.ops.vig.bigla(q, k, v, g_fwd, g_bwd, scale, backend, gate_normalizer=None) -> o
torch.ops.vig.bigla_backward(q, k, v, g_fwd, g_bwd, do, scale, backend, gate_normalizer=None)
    -> (dq, dk, dv, dg_fwd, dg_bwd)
gate_normalizer: None for log-space gates; n when g_fwd, g_bwd are gate logits (decays logsigmoid(x) / n,
gates.py), whose gradients the backward then returns.

backend "triton": the fused kernels (imported lazily: importing this module never imports triton).
backend "torch": chunk.py; its backward is autograd through chunk.py on detached inputs, so the
op has the same autograd contract on CPU and GPU. Only the inputs are saved for backward. With
create_graph=True its backward runs autograd through chunk.py on the inputs themselves, so double backward
works; backend "triton" has none (vig::bigla_backward's own backward raises NotImplementedError).
Outputs are always fresh contiguous tensors (the fake impls promise exactly that).
"""
from typing import Optional

import torch
from torch.library import custom_op

from vig.ops.bigla.gates import decays_of

OP_BACKENDS = ("torch", "triton")
# An op's impl runs below the autograd dispatch keys, where even enable_grad() records nothing.
# The torch backend's backward re-enters autograd under the dispatch-key TLS of a plain eager call.
_EAGER_TLS = (torch._C._dispatch_tls_local_include_set(), torch._C._dispatch_tls_local_exclude_set())


def _check_backend(backend):
    if backend not in OP_BACKENDS:
        raise ValueError(f"vig::bigla: backend must be one of {OP_BACKENDS}, got {backend!r}")


@custom_op("vig::bigla", mutates_args=())
def bigla_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g_fwd: torch.Tensor, g_bwd: torch.Tensor,
             scale: float, backend: str, gate_normalizer: Optional[float] = None) -> torch.Tensor:
    _check_backend(backend)
    if backend == "triton":
        from vig.ops.bigla.triton.launch import bigla_fwd
        return bigla_fwd(q, k, v, g_fwd, g_bwd, scale, gate_normalizer)
    with torch.no_grad():
        return torch_bigla(q, k, v, g_fwd, g_bwd, scale, gate_normalizer).contiguous()


def torch_bigla(q, k, v, g_fwd, g_bwd, scale, gate_normalizer=None):
    """The torch backend as plain differentiable ops (chunk.py), gate logits converted first."""
    from vig.ops.bigla.chunk import bigla_chunk
    return bigla_chunk(q, k, v, *decays_of(g_fwd, g_bwd, gate_normalizer), scale)


@bigla_op.register_fake
def _bigla_fake(q, k, v, g_fwd, g_bwd, scale, backend, gate_normalizer=None):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


@custom_op("vig::bigla_backward", mutates_args=())
def bigla_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g_fwd: torch.Tensor, g_bwd: torch.Tensor,
                      do: torch.Tensor, scale: float, backend: str, gate_normalizer: Optional[float] = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_backend(backend)
    if backend == "triton":
        from vig.ops.bigla.triton.launch import bigla_bwd
        return bigla_bwd(do, q, k, v, g_fwd, g_bwd, scale, gate_normalizer)
    with torch._C._ForceDispatchKeyGuard(*_EAGER_TLS), torch.enable_grad():
        xs = [x.detach().requires_grad_() for x in (q, k, v, g_fwd, g_bwd)]
        o = torch_bigla(*xs, scale, gate_normalizer)
        grads = torch.autograd.grad(o, xs, do)
    return tuple(g.contiguous() for g in grads)


@bigla_backward_op.register_fake
def _bigla_backward_fake(q, k, v, g_fwd, g_bwd, do, scale, backend, gate_normalizer=None):
    return tuple(x.new_empty(x.shape) for x in (q, k, v, g_fwd, g_bwd))


def _setup_context(ctx, inputs, output):
    q, k, v, g_fwd, g_bwd, scale, backend, *rest = inputs
    ctx.save_for_backward(q, k, v, g_fwd, g_bwd)
    ctx.scale = scale
    ctx.backend = backend
    ctx.gate_normalizer = rest[0] if rest else None


def _backward(ctx, do):
    q, k, v, g_fwd, g_bwd = ctx.saved_tensors
    if ctx.backend == "torch" and torch.is_grad_enabled():
        # create_graph=True: differentiable gradients (double backward) from autograd through the torch path
        xs = (q, k, v, g_fwd, g_bwd)
        wanted = [x for x, need in zip(xs, ctx.needs_input_grad) if need]
        grads = iter(torch.autograd.grad(torch_bigla(*xs, ctx.scale, ctx.gate_normalizer), wanted, do,
                                         create_graph=True))
        return (*(next(grads) if need else None for need in ctx.needs_input_grad[:5]), None, None, None)
    grads = torch.ops.vig.bigla_backward(q, k, v, g_fwd, g_bwd, do, ctx.scale, ctx.backend, ctx.gate_normalizer)
    return (*grads, None, None, None)


bigla_op.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError("vig::bigla_backward is not differentiable: bigla(backend='triton') has no double "
                              "backward (a gradient of its gradients, after create_graph=True); use backend='torch' "
                              "or 'naive' for that")


bigla_backward_op.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)


def _register_flops():
    from vig.ops.bigla.flops import register_bigla_flop_formulas
    register_bigla_flop_formulas()


_register_flops()
