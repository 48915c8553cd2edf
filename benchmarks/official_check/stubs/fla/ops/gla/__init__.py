"""Stub of fla.ops.gla: the GLA entry points the official models import. Written from the official kernels' semantics,
not copied."""

from fla.ops.gla.chunk_fuse import fused_chunk_gla
from fla.ops.gla.recurrent_fuse import fused_recurrent_gla

chunk_gla = fused_chunk_gla
__all__ = ["chunk_gla", "fused_chunk_gla", "fused_recurrent_gla"]
