"""The ViG-H token mixer: channel-first bidirectional GLA with 2D locality injection (spec §2.3)."""
import torch.nn as nn

from vig.ops.bigla import bigla
from vig.layers.bigla_attn import gates_for_op, head_dims, logits_into_op, norm_gate_blend, reset_bigla_projections
from vig.layers.linear2d import Linear2d
from vig.layers.norms import RMSNorm


def _heads_last(x, num_heads):
    """[B, H*D, h, w] -> strided view [B, N, H, D] (channel c = head*D + d, raster n = i*w + j)."""
    B, C = x.shape[:2]
    return x.flatten(2).unflatten(1, (num_heads, C // num_heads)).permute(0, 3, 1, 2)


class GLA2D(nn.Module):
    """x [B, C, h, w] -> [B, C, h, w]. qkv/gates/g_proj are Linear2d, o_proj a plain Linear."""

    def __init__(self, dim, num_heads, expand_k=0.5, expand_v=1.0, gate_low_rank_dim=16,
                 gate_logit_normalizer=16, norm_eps=1e-6):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.key_dim, self.value_dim, self.head_k_dim, self.head_v_dim = head_dims(dim, num_heads, expand_k, expand_v)
        self.gate_logit_normalizer = gate_logit_normalizer
        self.in_proj = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False), nn.Identity())
        self.qkv_proj = Linear2d(dim, 2 * self.key_dim + self.value_dim, bias=False)
        self.gk_proj = nn.Sequential(
            Linear2d(dim, gate_low_rank_dim, bias=False),
            Linear2d(gate_low_rank_dim, 2 * self.key_dim, bias=True),
        )
        self.o_proj = nn.Linear(self.value_dim, dim, bias=False)
        self.g_norm = RMSNorm(self.head_v_dim, eps=norm_eps)
        self.l_norm = RMSNorm(self.head_v_dim, eps=norm_eps)
        self.g_proj = Linear2d(dim, self.value_dim, bias=True)
        self.gate_fn = nn.SiLU()  # parity with the release; unused there too
        reset_bigla_projections(self)

    def project(self, x, return_local=False, gate_logits=False):
        """x [B, C, h, w] -> (q, k, v, g_fwd, g_bwd) as [B, N, H, D] strided views, gates in log space
        (gate_logits=True: the raw logits, see BiGLAttention.project).

        With return_local=True the depthwise-conv output [B, C, h, w] is appended.
        """
        local = self.in_proj(x)
        kd, H = self.key_dim, self.num_heads
        qkv = self.qkv_proj(local)
        # split, not slicing: one cat in the backward (see BiGLAttention.project)
        q, k, v = (_heads_last(x, H) for x in qkv.split((kd, kd, self.value_dim), dim=1))
        g = gates_for_op(self.gk_proj(local), self.gate_logit_normalizer, gate_logits)
        g_fwd, g_bwd = (_heads_last(x, H) for x in g.split((kd, kd), dim=1))
        out = (q, k, v, g_fwd, g_bwd)
        return out + (local,) if return_local else out

    def forward(self, x):
        B, C, h, w = x.shape
        logits = logits_into_op(x)
        q, k, v, g_fwd, g_bwd, local = self.project(x, return_local=True, gate_logits=logits)
        H = self.num_heads
        o = bigla(q, k, v, g_fwd, g_bwd, gate_logit_normalizer=self.gate_logit_normalizer if logits else None)
        o = norm_gate_blend(self, o, _heads_last(local, H), _heads_last(self.g_proj(local), H))
        o = o.reshape(B, h * w, self.value_dim)
        return self.o_proj(o).transpose(1, 2).reshape(B, C, h, w)
