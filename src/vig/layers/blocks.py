"""Residual blocks: GLABlock (plain ViG, channel-last) and VSSBlock (ViG-H, channel-first)."""
import torch
import torch.nn as nn
from timm.layers import DropPath

from vig.layers.bigla_attn import BiGLAttention
from vig.layers.fused import fused_op_enabled
from vig.layers.gla2d import GLA2D
from vig.layers.mlp import GatedMlp2d, SwiGLUMlp, swiglu_hidden
from vig.layers.norms import LayerNorm2d, RMSNorm
from vig.layers.weight_pack import block_weights


def add_norm(x, y, norm, autocast_out=False):
    """(x + y, norm(x + y)); for an RMSNorm on CUDA one kernel each way (one read of x and y).

    autocast_out: every consumer of the norm is an autocast op (linear, conv) that rounds it to the autocast
    dtype, so under autocast the kernel writes it in that dtype (half the bytes of fp32, the same values)."""
    if isinstance(norm, RMSNorm) and x.shape == y.shape and fused_op_enabled(x, "add_rmsnorm"):
        from vig.layers.fused.add_rmsnorm_op import add_rms_norm_fused
        n_dtype = None
        if autocast_out and torch.is_autocast_enabled(x.device.type):
            n_dtype = torch.get_autocast_dtype(x.device.type)
        return add_rms_norm_fused(x, y, norm.weight, norm.eps, n_dtype)
    x = x + y
    return x, norm(x)


class GLABlock(nn.Module):
    """Pre-norm block: x + attn(attn_norm(x)), then + mlp(mlp_norm(.)). x [B, N, C], hw = (h, w)."""

    def __init__(self, dim, num_heads, expand_k=0.5, expand_v=1.0, mlp_hidden_multiple=256,
                 use_act_in_conv=False, use_out_act=False, drop_path=0.0, norm_eps=1e-6):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps=norm_eps)
        self.attn = BiGLAttention(dim, num_heads, expand_k, expand_v, use_act_in_conv=use_act_in_conv,
                                  use_out_act=use_out_act, norm_eps=norm_eps)
        self.mlp_norm = RMSNorm(dim, eps=norm_eps)
        self.mlp = SwiGLUMlp(dim, swiglu_hidden(dim, mlp_hidden_multiple))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, hw):
        x, pending = self.forward_pending(x, None, hw)
        return x + pending

    def forward_pending(self, x, pending, hw):
        """The block on the stream x + pending (pending None: x alone), returned as the unsummed
        pair (residual, mlp branch) so that the next block, or a final RMSNorm through add_norm,
        can fuse that add with its norm: x + pending = the output of forward."""
        if pending is None:
            h = self.attn_norm(x)
        else:
            x, h = add_norm(x, pending, self.attn_norm, autocast_out=True)
        packed = block_weights(self, h)
        y = self.attn(h, hw) if packed is None else self.attn(h, hw, packed_weights=packed)
        if self._fuse_residual_norm():
            x, h = add_norm(x, y, self.mlp_norm, autocast_out=True)
        else:  # DropPath active (training): the plain masked add, then the norm
            x = x + self.drop_path(y)
            h = self.mlp_norm(x)
        return x, self.drop_path(self.mlp(h) if packed is None else self.mlp(h, packed_weights=packed))

    def _fuse_residual_norm(self):
        return isinstance(self.drop_path, nn.Identity) or not self.training or self.drop_path.drop_prob == 0


class VSSBlock(nn.Module):
    """ViG-H block on NCHW: x + op(norm(x)), then + mlp(norm2(.)); LayerNorm2d eps 1e-5."""

    def __init__(self, dim, num_heads, expand_k=0.5, expand_v=1.0, mlp_hidden_multiple=32,
                 drop_path=0.0, mlp_drop=0.0):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.op = GLA2D(dim, num_heads, expand_k, expand_v)
        self.drop_path = DropPath(drop_path)  # present even at rate 0, as in the release
        self.norm2 = LayerNorm2d(dim)
        self.mlp = GatedMlp2d(dim, swiglu_hidden(dim, mlp_hidden_multiple), drop=mlp_drop)

    def forward(self, x):
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
