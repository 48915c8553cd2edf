"""Stub of fla.models: GLAConfig only. Written from the official kernels' semantics, not copied."""


class GLAConfig:
    """Stands in for fla.models.GLAConfig (a transformers PretrainedConfig): same defaults for every field the
    official models read; extra kwargs become attributes, as PretrainedConfig does."""
    def __init__(self, vocab_size=32000, hidden_size=2048, expand_k=0.5, expand_v=1, hidden_ratio=4,
                 intermediate_size=None, num_hidden_layers=24, num_heads=4, attn_mode="chunk",
                 use_short_conv=False, conv_size=4, share_conv_kernel=True, clamp_min=None, hidden_act="swish",
                 max_position_embeddings=2048, rms_norm_eps=1e-6, use_gk=True, use_gv=False, use_cache=True,
                 pad_token_id=None, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                 initializer_range=0.02, fuse_norm=True, fuse_cross_entropy=True, **kwargs):
        loc = dict(locals()); loc.pop("self"); loc.pop("kwargs")
        for k, v in loc.items():
            setattr(self, k, v)
        for k, v in kwargs.items():
            setattr(self, k, v)
