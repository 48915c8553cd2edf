"""Finding a BiGLA mixer in a model and capturing what it feeds to the op.

Every BiGLA mixer (plain ViG: `blocks[i].attn`; ViG-H: `layers[s].blocks[j].op`) has a method
`project(...)` returning (q, k, v, g_fwd, g_bwd) in [B, T, H, D] layout with log-space gates (by default),
exactly the arguments of `vig.ops.bigla.bigla`, and its forward calls it. We wrap that method
on the chosen instance for one forward pass.
"""
import torch

from vig.errors import UsageError


class _Captured(Exception):
    """Raised from inside the forward once the wanted layer has projected: the rest of the
    network is not needed."""


def list_mixers(model):
    """[(qualified name, module)] of every module with a `project` method, in network order."""
    return [(n, m) for n, m in model.named_modules() if callable(getattr(m, "project", None))]


def resolve_layer(mixers, spec):
    """spec: None (last layer), "L" (index over all mixers, negative counts from the end) or
    "S.J" (stage S, block J of a hierarchical model). Returns (index, name, module)."""
    if not mixers:
        raise UsageError("--model: this model has no BiGLA layer (no module with a project() method)")
    n = len(mixers)
    if spec is None:
        return n - 1, mixers[-1][0], mixers[-1][1]
    text = str(spec).strip()
    if "." in text:
        try:
            stage, block = (int(p) for p in text.split("."))
        except ValueError:
            raise UsageError(f"--layer: expected L or STAGE.BLOCK, got {spec!r}") from None
        prefix = f"layers.{stage}.blocks.{block}."
        for i, (name, module) in enumerate(mixers):
            if name.startswith(prefix):
                return i, name, module
        names = ", ".join(_stage_block(name) for name, _ in mixers)
        raise UsageError(f"--layer {spec}: no BiGLA layer at stage {stage}, block {block}; available: {names}")
    try:
        index = int(text)
    except ValueError:
        raise UsageError(f"--layer: expected L or STAGE.BLOCK, got {spec!r}") from None
    if not -n <= index < n:
        raise UsageError(f"--layer {spec} is out of range: this model has {n} BiGLA layers (0..{n - 1})")
    index %= n
    return index, mixers[index][0], mixers[index][1]


def _stage_block(name):
    parts = name.split(".")
    if len(parts) >= 4 and parts[0] == "layers" and parts[2] == "blocks":
        return f"{parts[1]}.{parts[3]}"
    return name


def capture(model, mixer, x):
    """Runs model(x) up to `mixer`'s projection. Returns ((q, k, v, g_fwd, g_bwd), (h, w))."""
    seen = {}

    def pre_hook(module, args, kwargs):
        seen.setdefault("call", (args, kwargs))

    original = mixer.project

    def project(*args, **kwargs):
        # log-space gates whatever the forward asked for (on CUDA it asks for the raw logits), and the split views
        # where ViG's mixer asked for packed projections (ViG-H's project takes no `packed`)
        out = original(*args, **{**kwargs, "gate_logits": False, **({"packed": False} if "packed" in kwargs else {})})
        seen["qkvg"] = tuple(t.detach() for t in out[:5])  # extras (e.g. the local branch) are not needed
        raise _Captured

    handle = mixer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    mixer.project = project
    try:
        with torch.no_grad():
            model(x)
    except _Captured:
        pass
    finally:
        del mixer.project
        handle.remove()
    if "qkvg" not in seen:
        raise UsageError(f"{type(mixer).__name__}.project() was not called in the forward pass")
    T = seen["qkvg"][0].shape[1]
    return seen["qkvg"], _grid(seen.get("call"), T)


def _grid(call, T):
    """Token grid (h, w) of the layer: from its input (a [B, C, H, W] tensor or an (h, w) pair),
    else a square root of T (inputs here are square)."""
    if call is not None:
        args, kwargs = call
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor) and a.dim() == 4 and a.shape[-2] * a.shape[-1] == T:
                return int(a.shape[-2]), int(a.shape[-1])
            if isinstance(a, (tuple, list)) and len(a) == 2 and all(isinstance(v, int) for v in a):
                if a[0] * a[1] == T:
                    return int(a[0]), int(a[1])
    side = int(round(T ** 0.5))
    if side * side != T:
        raise UsageError(f"cannot infer the token grid of a layer with {T} tokens")
    return side, side
