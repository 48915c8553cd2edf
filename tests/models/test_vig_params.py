"""Exact parameter counts and state_dict layouts against the official release (official_spec.md §1.1, §2.1)."""
import functools

import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers the models)



PARAM_COUNTS = {
    "vig_tiny": 5_834_536,
    "vig_small": 22_615_144,
    "vig_base": 89_022_184,
    "vig_h_tiny": 28_600_680,
    "vig_h_small": 50_051_688,
    "vig_h_base": 88_904_360,
}

# ViG-T, in state_dict order (spec §1.1); blocks.{i} repeats for i = 0..11
VIG_T_HEAD = [
    ("pos_embed", (1, 196, 192)),
    ("patch_embed.proj.0.weight", (96, 3, 9, 9)), ("patch_embed.proj.0.bias", (96,)),
    ("patch_embed.proj.1.weight", (96,)), ("patch_embed.proj.1.bias", (96,)),
    ("patch_embed.proj.3.weight", (192, 96, 3, 3)), ("patch_embed.proj.3.bias", (192,)),
    ("patch_embed.proj.4.weight", (192,)), ("patch_embed.proj.4.bias", (192,)),
    ("head.weight", (1000, 192)), ("head.bias", (1000,)),
]
VIG_T_BLOCK = [
    ("attn_norm.weight", (192,)), ("attn.in_proj.0.weight", (192, 1, 3, 3)), ("attn.qkv_proj.weight", (384, 192)),
    ("attn.gk_proj.0.weight", (16, 192)), ("attn.gk_proj.1.weight", (192, 16)), ("attn.gk_proj.1.bias", (192,)),
    ("attn.o_proj.weight", (192, 192)), ("attn.g_norm.weight", (64,)), ("attn.l_norm.weight", (64,)),
    ("attn.g_proj.weight", (192, 192)), ("attn.g_proj.bias", (192,)), ("mlp_norm.weight", (192,)),
    ("mlp.gate_proj.weight", (1024, 192)), ("mlp.down_proj.weight", (192, 512)),
]


def vig_t_expected():
    keys = list(VIG_T_HEAD)
    for i in range(12):
        keys += [(f"blocks.{i}.{k}", s) for k, s in VIG_T_BLOCK]
    return keys + [("norm.weight", (192,))]


def vig_h_t_expected():
    """ViG-H-T in state_dict order (spec §2.1)."""
    keys = [
        ("patch_embed.0.weight", (48, 3, 3, 3)), ("patch_embed.0.bias", (48,)),
        ("patch_embed.2.weight", (48,)), ("patch_embed.2.bias", (48,)),
        ("patch_embed.5.weight", (96, 48, 3, 3)), ("patch_embed.5.bias", (96,)),
        ("patch_embed.7.weight", (96,)), ("patch_embed.7.bias", (96,)),
    ]
    dims, depths = [96, 192, 384, 768], [2, 2, 5, 2]
    for s, (c, depth) in enumerate(zip(dims, depths)):
        hidden = 256 * 2 ** s
        for j in range(depth):
            p = f"layers.{s}.blocks.{j}."
            keys += [(p + k, shape) for k, shape in [
                ("norm.weight", (c,)), ("norm.bias", (c,)), ("op.in_proj.0.weight", (c, 1, 3, 3)),
                ("op.qkv_proj.weight", (2 * c, c)), ("op.gk_proj.0.weight", (16, c)),
                ("op.gk_proj.1.weight", (c, 16)), ("op.gk_proj.1.bias", (c,)), ("op.o_proj.weight", (c, c)),
                ("op.g_norm.weight", (32,)), ("op.l_norm.weight", (32,)), ("op.g_proj.weight", (c, c)),
                ("op.g_proj.bias", (c,)), ("norm2.weight", (c,)), ("norm2.bias", (c,)),
                ("mlp.fc1.weight", (2 * hidden, c)), ("mlp.fc2.weight", (c, hidden)),
            ]]
        if s < 3:
            keys += [(f"layers.{s}.downsample.1.weight", (2 * c, c, 3, 3)), (f"layers.{s}.downsample.1.bias", (2 * c,)),
                     (f"layers.{s}.downsample.3.weight", (2 * c,)), (f"layers.{s}.downsample.3.bias", (2 * c,))]
    return keys + [("classifier.norm.weight", (768,)), ("classifier.norm.bias", (768,)),
                   ("classifier.head.weight", (1000, 768)), ("classifier.head.bias", (1000,))]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=None)
def meta_model(name):
    # the meta device gives counts and shapes without allocating (or initialising) B-size weights
    with torch.device("meta"):
        return timm.create_model(name)


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_param_count_exact(name):
    assert n_params(meta_model(name)) == PARAM_COUNTS[name]


def test_vig_tiny_state_dict_order_and_shapes():
    model = meta_model("vig_tiny")
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == vig_t_expected()
    assert not list(model.buffers())


def test_vig_h_tiny_state_dict_order_and_shapes():
    model = meta_model("vig_h_tiny")
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == vig_h_t_expected()
    assert not list(model.buffers())


def test_vig_h_base_hidden_rounds_to_32():
    model = meta_model("vig_h_base")
    hidden = [model.layers[s].blocks[0].mlp.fc2.weight.shape[1] for s in range(4)]
    assert hidden == [352, 704, 1376, 2752]


@pytest.mark.parametrize("name,act_conv,out_act", [("vig_tiny", True, True), ("vig_small", False, False)])
def test_vig_variant_activations(name, act_conv, out_act):
    attn = meta_model(name).blocks[0].attn
    assert isinstance(attn.in_proj[1], torch.nn.SiLU) == act_conv
    assert hasattr(attn, "out_act") == out_act
