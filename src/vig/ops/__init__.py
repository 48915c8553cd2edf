from vig.ops.bigla import bigla

__all__ = ["bigla"]
