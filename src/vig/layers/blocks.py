"""Residual blocks: GLABlock (plain ViG, channel-last) and VSSBlock (ViG-H, channel-first)."""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from vig.layers.bigla_attn import BiGLAttention
from vig.layers.fused import compute_dtype, fused_op_enabled
from vig.layers.gla2d import GLA2D
from vig.layers.mlp import GatedMlp2d, SwiGLUMlp, swiglu_hidden
from vig.layers.norms import LayerNorm2d, RMSNorm
from vig.layers.weight_pack import block_weights


class DeferredLinear(NamedTuple):
    """F.linear(input, weight), not yet run: add_norm runs it with the residual add and an RMSNorm as one kernel,
    vig::linear_add_rms_norm (GLABlock.defers_projections: inference on CUDA)."""
    input: torch.Tensor
    weight: torch.Tensor


def materialize(y):
    """y, with a DeferredLinear run."""
    return F.linear(y.input, y.weight) if isinstance(y, DeferredLinear) else y


def add_norm(x, y, norm, autocast_out=False):
    """(x + y, norm(x + y)); for an RMSNorm on CUDA one kernel each way (one read of x and y).

    autocast_out: every consumer of the norm is an autocast op (linear, conv) that rounds it to the autocast
    dtype, so under autocast the kernel writes it in that dtype (half the bytes of fp32, the same values).
    y a DeferredLinear: with autocast_out and an RMSNorm, its GEMM, the add and the norm are one kernel."""
    if isinstance(y, DeferredLinear):
        if autocast_out and isinstance(norm, RMSNorm):
            from vig.layers.fused.linear_add_norm_op import linear_add_rms_norm
            return linear_add_rms_norm(y.input, y.weight, x, norm.weight, norm.eps)
        y = materialize(y)
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
        return x + materialize(pending)

    def forward_pending(self, x, pending, hw):
        """The block on the stream x + pending (pending None: x alone), returned as the unsummed
        pair (residual, mlp branch) so that the next block, or a final RMSNorm through add_norm,
        can fuse that add with its norm: x + pending = the output of forward."""
        if pending is None:
            h = self.attn_norm(x)
        else:
            x, h = add_norm(x, pending, self.attn_norm, autocast_out=True)
        packed = block_weights(self, h)
        if self.defers_projections(h):
            # o_proj and down_proj each run inside the kernel of the add and the norm after them
            dtype = compute_dtype(h)
            w_o, w_down = ((packed["o"], packed["down"]) if packed is not None else
                           (self.attn.o_proj.weight.to(dtype), self.mlp.down_proj.weight.to(dtype)))
            o = self.attn(h, hw, packed_weights=packed, out_proj=False)
            x, h = add_norm(x, DeferredLinear(o.to(dtype), w_o), self.mlp_norm, autocast_out=True)
            return x, DeferredLinear(self.mlp(h, packed_weights=packed, down_proj=False).to(dtype), w_down)
        y = self.attn(h, hw) if packed is None else self.attn(h, hw, packed_weights=packed)
        if self._fuse_residual_norm():
            x, h = add_norm(x, y, self.mlp_norm, autocast_out=True)
        else:  # DropPath active (training): the plain masked add, then the norm
            x = x + self.drop_path(y)
            h = self.mlp_norm(x)
        return x, self.drop_path(self.mlp(h) if packed is None else self.mlp(h, packed_weights=packed))

    def defers_projections(self, h):
        """Inference on CUDA in bf16 / fp16 at widths up to linear_add_norm_op.MAX_DIM (ViG-T): o_proj and
        down_proj are handed on as DeferredLinear (VIG_FUSED_OFF=linear_add_norm). fp32 keeps cuBLAS, under torch's
        own TF32 settings."""
        # the route's check first: it needs CUDA, and autocast has no state to ask for meta tensors (FLOP counts)
        if torch.is_grad_enabled() or not fused_op_enabled(h, "linear_add_norm"):
            return False
        from vig.layers.fused.linear_add_norm_op import MAX_DIM
        return (compute_dtype(h) in (torch.bfloat16, torch.float16) and h.shape[-1] <= MAX_DIM
                and self._fuse_residual_norm())

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
