from vig.layers.bigla_attn import BiGLAttention
from vig.layers.blocks import GLABlock, VSSBlock
from vig.layers.embed import V2PatchEmbed, hier_downsample, hier_stem, resample_pos_embed
from vig.layers.gla2d import GLA2D
from vig.layers.linear2d import Linear2d
from vig.layers.mlp import GatedMlp2d, SwiGLUMlp, swiglu_hidden
from vig.layers.norms import LayerNorm2d, RMSNorm

__all__ = [
    "BiGLAttention", "GLA2D", "GLABlock", "VSSBlock", "V2PatchEmbed", "hier_stem", "hier_downsample",
    "resample_pos_embed", "Linear2d", "SwiGLUMlp", "GatedMlp2d", "swiglu_hidden", "LayerNorm2d", "RMSNorm",
]
