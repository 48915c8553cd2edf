"""Stub of fla.modules.rotary: imported by the official models, unused by the released configs. Written from the
official kernels' semantics, not copied."""


class RotaryEmbedding:
    def __init__(self, *a, **k):
        raise NotImplementedError("rope_mode 'none' in the released configs")
