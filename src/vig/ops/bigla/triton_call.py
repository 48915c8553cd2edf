"""How the Triton backend is entered: the custom op when torch.compile or a dispatch mode (FLOP
counting, fake tensors) is watching, else a plain autograd.Function. (Neither runs under torch.func
transforms; vig.ops.bigla.bigla sends those to the torch path.)

Both run the same launchers (triton/launch.py) on the same saved inputs. The custom op's Python
dispatch and autograd wrapper cost host time on every call (on a 2-core CPU: 23 us against 7 us for
a no-grad forward, 223 us against 123 us for forward + backward); at ViG's sizes the op's kernels
take well under a millisecond, so a plain eager call would otherwise be bound by that host work.
Importing this module does not import triton.
"""

import torch


def _watched() -> bool:
    """True where only the registered custom op gives the right behaviour."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0:
        return True
    return torch._C._are_functorch_transforms_active()


class TritonLaunch(torch.autograd.Function):
    """fwd(*args) forward and bwd(do, *args) backward, the first n_saved args saved as tensors (the rest are
    constants); shared by bigla's five inputs and bigla_packed's two (packed.py). A fwd that returns (o, *extra)
    saves the extra tensors too (the key states, config.save_key_states): bwd(do, *args, *extra)."""

    @staticmethod
    def forward(ctx, fwd, bwd, n_saved, *args):
        out = fwd(*args)
        o, *extra = out if isinstance(out, tuple) else (out,)
        ctx.save_for_backward(*args[:n_saved], *extra)
        ctx.bwd, ctx.n_saved, ctx.constants = bwd, n_saved, args[n_saved:]
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):
        saved = ctx.saved_tensors
        grads = ctx.bwd(do, *saved[:ctx.n_saved], *ctx.constants, *saved[ctx.n_saved:])
        return (None, None, None, *grads, *(None,) * len(ctx.constants))


def saves_key_states(q, k, v, g_fwd, g_bwd) -> bool:
    """Whether this call takes the saved-key-states route: autograd records, an input needs a gradient, and
    config.save_key_states allows the shape (and its knob). Traced by torch.compile (no graph break)."""
    if not torch.is_grad_enabled():
        return False
    if not any(x.requires_grad for x in (q, k, v, g_fwd, g_bwd)):
        return False
    from vig.ops.bigla.triton.config import save_key_states
    return save_key_states(q, v)


def _launch_fwd(*args):
    from vig.ops.bigla.triton.launch import bigla_fwd
    return bigla_fwd(*args)


def _launch_bwd(do, *args):
    from vig.ops.bigla.triton.launch import bigla_bwd
    return bigla_bwd(do, *args)


def _launch_fwd_saving_keys(*args):
    from vig.ops.bigla.triton.launch import bigla_fwd
    return bigla_fwd(*args, save_keys=True)


def _launch_bwd_with_keys(do, *args):
    from vig.ops.bigla.triton.launch import bigla_bwd
    *args, key_states = args
    return bigla_bwd(do, *args, key_states=key_states)


def bigla_triton_call(q, k, v, g_fwd, g_bwd, scale: float, gate_normalizer=None):
    """BiGLA through the fused kernels, differentiable in all five inputs; inputs already checked.
    gate_normalizer: see custom_op.py (g_fwd, g_bwd are then gate logits)."""
    if _watched():
        return torch.ops.vig.bigla(q, k, v, g_fwd, g_bwd, scale, "triton", gate_normalizer)
    saved_keys = saves_key_states(q, k, v, g_fwd, g_bwd)
    fwd, bwd = (_launch_fwd_saving_keys, _launch_bwd_with_keys) if saved_keys else (_launch_fwd, _launch_bwd)
    return TritonLaunch.apply(fwd, bwd, 5, q, k, v, g_fwd, g_bwd, scale, gate_normalizer)
