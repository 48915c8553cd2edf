"""Norms with the official ViG numerics: RMSNorm computes in fp32 (float64 for float64) and returns the input dtype."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from vig.layers.fused import fused_enabled


def rms_norm_reference(x, weight, eps):
    """The official numerics in plain PyTorch (CPU path, and the oracle of the fused kernel)."""
    # fp32 widens half inputs; float64 stays float64 (a plain .float() rounded float64 models' norms to fp32, ~1e-8
    # relative on the logits against the official code run in float64)
    acc = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(acc)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.to(acc)).to(x.dtype)


class RMSNorm(nn.Module):
    """y = x * rsqrt(mean(x^2, -1) + eps) * weight, over the last dim; no bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if fused_enabled(x, "rmsnorm"):
            from vig.layers.fused.rmsnorm import rms_norm_fused
            return rms_norm_fused(x, self.weight, self.eps)
        return rms_norm_reference(x, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor (eps 1e-5, as the official stems)."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(num_channels, eps=eps)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
