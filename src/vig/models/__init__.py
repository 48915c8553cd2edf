"""ViG and ViG-H as timm models: importing this module registers vig_{tiny,small,base} and vig_h_*."""
from vig.models.vig import ViG
from vig.models.vig_h import HierViG
import vig.models.vig_fmnist  # noqa: F401,E402  registers vig_fmnist (the `vig train --data default` model)

__all__ = ["ViG", "HierViG"]
