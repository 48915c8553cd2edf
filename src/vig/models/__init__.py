"""ViG and ViG-H as timm models: importing this module registers vig_{tiny,small,base} and vig_h_*."""
from vig.models.vig import ViG
from vig.models.vig_h import HierViG

__all__ = ["ViG", "HierViG"]
