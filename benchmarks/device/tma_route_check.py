"""Counts the MLP op's TMA kernel calls in one bf16-autocast inference forward and one training forward + backward of
each model named on the command line: the route is the default on sm_90 since session 42, and a model A/B whose
variant never took it would time the same code twice. ViG-B trains on the split path (mlp.fused_mlp_train_max_dim:
384 with the TMA kernels): 0 there."""
import sys

import timm
import torch

import vig.models  # noqa: F401  (registers the models)
from vig.layers.fused import linear_swiglu_tma as tma

calls = {"forward": 0, "dh": 0}
for name in ("forward", "dh"):
    original = getattr(tma, name)
    setattr(tma, name, lambda *a, _f=original, _n=name, **k: calls.__setitem__(_n, calls[_n] + 1) or _f(*a, **k))
for model_name in sys.argv[1:]:
    model = timm.create_model(model_name).cuda()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    counts = {}
    for mode in ("infer", "train"):
        calls.update(forward=0, dh=0)
        with torch.autocast("cuda", dtype=torch.bfloat16), torch.set_grad_enabled(mode == "train"):
            y = model(x)
        if mode == "train":
            y.float().sum().backward()
        counts[mode] = dict(calls)
    print(model_name, counts, flush=True)
