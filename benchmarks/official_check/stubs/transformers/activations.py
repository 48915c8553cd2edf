"""Stub of transformers.activations.ACT2FN. Written from the official kernels' semantics, not copied."""

import torch.nn as nn


class _ACT2FN(dict):
    # transformers' ClassInstantier: ACT2FN[name] returns a fresh module instance
    def __getitem__(self, key):
        return dict.__getitem__(self, key)()


ACT2FN = _ACT2FN(swish=nn.SiLU, silu=nn.SiLU, gelu=nn.GELU, relu=nn.ReLU, sigmoid=nn.Sigmoid)
