from vig.layers.norms import LayerNorm2d, RMSNorm

__all__ = ["LayerNorm2d", "RMSNorm"]
