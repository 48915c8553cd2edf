"""The official initialisation (spec §1.2, §2.2), checked through weight statistics."""
import math

import pytest
import timm
import torch

import vig.models  # noqa: F401



GAIN = 2 ** -2.5


def xavier_bound(w):
    fan_in, fan_out = w.shape[1] * w[0, 0].numel(), w.shape[0] * w[0, 0].numel()
    return GAIN * math.sqrt(6.0 / (fan_in + fan_out))


def assert_xavier(w):
    bound = xavier_bound(w)
    assert w.abs().max() <= bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)


def assert_normal02(w):
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001


@pytest.fixture(scope="module")
def vig_base():
    torch.manual_seed(0)
    return timm.create_model("vig_base")


@pytest.fixture(scope="module")
def vig_h_tiny():
    torch.manual_seed(0)
    return timm.create_model("vig_h_tiny")


def test_vig_init(vig_base):
    m = vig_base
    assert_normal02(m.head.weight)
    assert_normal02(m.blocks[3].mlp.gate_proj.weight)
    assert_normal02(m.blocks[3].mlp.down_proj.weight)
    attn = m.blocks[5].attn
    for w in (attn.qkv_proj.weight, attn.o_proj.weight, attn.g_proj.weight, attn.in_proj[0].weight,
              attn.gk_proj[0].weight, attn.gk_proj[1].weight):
        assert_xavier(w)
    for b in (m.head.bias, attn.g_proj.bias, attn.gk_proj[1].bias):
        assert torch.count_nonzero(b) == 0
    assert abs(m.pos_embed.std().item() - 0.02) < 0.001 and m.pos_embed.abs().max() <= 2.0
    assert torch.all(attn.g_norm.weight == 1) and torch.all(m.norm.weight == 1)
    ln = m.patch_embed.proj[1]
    assert torch.all(ln.weight == 1) and torch.count_nonzero(ln.bias) == 0


def test_vig_h_init(vig_h_tiny):
    m = vig_h_tiny
    op = m.layers[3].blocks[1].op
    # the model-level trunc-normal overrides the mixer's xavier on every Linear/Linear2d ...
    for w in (op.qkv_proj.weight, op.o_proj.weight, op.g_proj.weight, m.layers[3].blocks[1].mlp.fc1.weight):
        assert_normal02(w)
        assert w.abs().max() <= 2.0
    assert_normal02(m.classifier.head.weight)
    # ... but not on the depthwise conv
    assert_xavier(op.in_proj[0].weight)
    blk = m.layers[2].blocks[0]
    assert torch.all(blk.norm.weight == 1) and torch.count_nonzero(blk.norm.bias) == 0
    assert torch.count_nonzero(op.gk_proj[1].bias) == 0
