"""Kernels and bytes of one forward pass, grouped by the module that issues them.

At bs 256 the small ops around the matmuls (norms, gates, activations) are memory-bound: their bytes,
not their FLOPs, set the time. This counter needs no GPU (shapes and dtypes follow autocast the same way
on CPU), so it shows where fusion would pay before any kernel is written. Bytes are each op's tensor
inputs read plus outputs written, an upper bound of the HBM traffic (caches can only lower it).
"""
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vig.bench import timing

# ops that only re-describe memory: no kernel, no traffic
_VIEWS = {"view", "_unsafe_view", "t", "transpose", "permute", "unsqueeze", "squeeze", "expand", "slice", "select",
          "split", "split_with_sizes", "unflatten", "alias", "as_strided", "detach", "chunk", "unbind", "reshape",
          "flatten", "_reshape_alias", "empty", "empty_like", "new_empty", "empty_strided", "lift_fresh"}
# compute-bound ops, reported under their own name whatever module calls them
_HEAVY = {"mm", "addmm", "bmm", "convolution", "bigla", "bigla_packed",
          "scaled_dot_product_attention",
          "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
          "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu"}


def _nbytes(x):
    return x.numel() * x.element_size() if isinstance(x, torch.Tensor) else 0


class _Counter(TorchDispatchMode):
    def __init__(self, scope):
        super().__init__()
        self.scope = scope
        self.kernels = collections.Counter()
        self.bytes = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._overloadpacket.__name__
        if name in _VIEWS:
            return out
        key = name if name in _HEAVY else f"elementwise in {self.scope[-1] if self.scope else 'model'}"
        flat_out = out if isinstance(out, (tuple, list)) else [out]
        self.kernels[key] += 1
        self.bytes[key] += sum(map(_nbytes, flat_out)) + sum(map(_nbytes, args))
        return out


def _count(model, img_size, dtype_name, device, batch):
    scope, hooks = [], []
    for module in model.modules():  # the innermost running module names the traffic
        name = type(module).__name__
        hooks.append(module.register_forward_pre_hook(lambda *_, n=name: scope.append(n)))
        hooks.append(module.register_forward_hook(lambda *_: scope.pop() and None))
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    counter = _Counter(scope)
    try:
        with torch.no_grad(), timing.autocast(device, dtype_name), counter:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return counter


def op_traffic(model, img_size, dtype_name="bf16", device="cpu"):
    """{group: {"kernels": per forward, "mb_per_img": MB}} for an eval forward, sorted by bytes.

    mb_per_img is the marginal traffic of one more image (batch 2 minus batch 1), so per-batch costs
    such as autocast's weight casts drop out, as they do at bs 256."""
    device = torch.device(device)
    model.eval()
    one, two = (_count(model, img_size, dtype_name, device, b) for b in (1, 2))
    rows = {k: {"kernels": two.kernels[k], "mb_per_img": (two.bytes[k] - one.bytes[k]) / 1e6} for k in two.kernels}
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["mb_per_img"]))


def summary(rows):
    elementwise = [v for k, v in rows.items() if k.startswith("elementwise")]
    return {"kernels": sum(v["kernels"] for v in rows.values()),
            "elementwise_kernels": sum(v["kernels"] for v in elementwise),
            "elementwise_mb_per_img": sum(v["mb_per_img"] for v in elementwise)}
