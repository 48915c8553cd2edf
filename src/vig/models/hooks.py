"""Whether a module's hooks would be skipped by a forward that does not go through its __call__ (the fused block
path of ViG, timm's checkpoint_seq over a ViG-H stage)."""
import torch.nn as nn


def has_hooks(module: nn.Module) -> bool:
    """Hooks on `module` itself (feature_cls='hook', Grad-CAM), or any hook registered globally."""
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks:
        return True
    m = nn.modules.module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
                or m._global_backward_pre_hooks)
