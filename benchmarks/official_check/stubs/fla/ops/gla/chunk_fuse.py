"""fused_chunk_gla: chunked evaluation of the same causal recurrence (zero-padding to 16 at the end does not touch
real tokens); here evaluated as the recurrence itself.
Written from the official kernels' semantics, not copied."""

import torch.nn.functional as F

from fla.ops.gla.recurrent_fuse import _scan


def pad(x, chunk_size=16):
    T = x.shape[-2]
    P = -(T // -chunk_size) * chunk_size
    return F.pad(x, (0, 0, 0, P - T)) if T % chunk_size else x


class FusedChunkGLAFunction:
    @staticmethod
    def apply(*a, **k):
        raise NotImplementedError("only via fused_chunk_gla in the stub")


def fused_chunk_gla(q, k, v, g, scale=-1, initial_state=None, output_final_state=False):
    assert initial_state is None and not output_final_state
    if scale == -1:
        scale = q.shape[-1] ** -0.5
    return _scan(q, k, v, g, scale, False).to(q.dtype), None
