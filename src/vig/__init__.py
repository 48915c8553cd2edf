"""vig: ViG vision backbones on bidirectional Gated Linear Attention."""
__version__ = "0.1.0"

from vig.ops import bigla  # noqa: E402,F401
import vig.models  # noqa: E402,F401  registers the timm models (vig_tiny ... vig_h_base)
