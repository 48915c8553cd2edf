"""Stub of fla.modules: RMSNorm (with fla's fused residual / prenorm arguments). Written from the official kernels'
semantics, not copied."""

import torch


class RMSNorm(torch.nn.Module):
    """fla.modules.rmsnorm.RMSNorm semantics (rms_norm_ref / _layer_norm_fwd_1pass_kernel with IS_RMS_NORM):
    x <- x + residual (if given); y = x * 1/sqrt(mean(x^2, -1) + eps) * w; returns y, or (y, x) for prenorm.
    Computed in the input dtype (float64 here) instead of the kernel's fp32."""
    def __init__(self, hidden_size, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.empty(hidden_size))
        self.register_parameter("bias", None)
        torch.nn.init.ones_(self.weight)

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        if residual is not None:
            x = x + residual
        rstd = 1 / torch.sqrt(x.square().mean(dim=-1, keepdim=True) + self.eps)
        y = x * rstd * self.weight
        return (y, x) if prenorm else y


class FusedRMSNormSwishGate(torch.nn.Module):
    def __init__(self, *a, **k):
        raise NotImplementedError("not used by ViG")
