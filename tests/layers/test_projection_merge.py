"""Inference on CUDA runs ViG's three projections of the conv output (qkv_proj, gk_proj's first layer, g_proj) as
one GEMM over their stacked weights (bigla_attn.merged_projections). Here, on CPU with the merge forced: the same
numbers as the three projections, the mixer's output unchanged, and the rule that only gradient-free calls merge."""
import pytest
import torch
from numerics import rel_rmse as _rel

import vig.layers.bigla_attn as attn
from vig.layers.bigla_attn import BiGLAttention

TOL_FP32 = 1e-5


def _mixer(dim=64, heads=2, vig_t=True):
    torch.manual_seed(0)
    m = BiGLAttention(dim, heads, use_act_in_conv=vig_t, use_out_act=vig_t)
    with torch.no_grad():  # nonzero biases, so a bias added to the wrong columns shows
        m.g_proj.bias.normal_()
        m.gk_proj[1].bias.normal_()
    return m


def test_stack_width_is_a_multiple_of_64_above_1024_columns():
    # ViG-T's 592 columns stay; ViG-S's 1,168 and ViG-B's 2,320 get zero rows up to inductor's 128-byte row stride
    assert [attn.stack_width(w) for w in (592, 1024, 1025, 1168, 2320, 2368)] == [592, 1024, 1088, 1216, 2368, 2368]


@pytest.mark.parametrize("dim,heads", [(64, 2), (96, 3), (384, 6)])  # (384, 6): ViG-S's widths, 48 zero rows
def test_merged_projections_equal_the_three_projections(dim, heads):
    m = _mixer(dim, heads)
    xs = torch.randn(2, 12, dim)
    with torch.no_grad():
        qkv, gates, gp = attn.merged_projections(m, xs)
        want = (m.qkv_proj(xs), m.gk_proj(xs), m.g_proj(xs) - m.g_proj.bias)  # the gate adds g_proj's bias
    for name, got, ref in zip(("qkv", "gates", "gp"), (qkv, gates, gp), want):
        assert got.shape == ref.shape, name
        assert _rel(got, ref) <= TOL_FP32, name
    # one buffer: qkv and gp are column slices of the same GEMM output
    assert qkv.untyped_storage().data_ptr() == gp.untyped_storage().data_ptr()


@pytest.mark.parametrize("vig_t", [True, False])
@pytest.mark.parametrize("packed", [True, False])
def test_mixer_output_is_unchanged_by_the_merge(vig_t, packed, monkeypatch):
    m = _mixer(vig_t=vig_t)
    x = torch.randn(2, 20, 64)
    merged = []
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name="": name == "bigla_packed" and packed)
    with torch.no_grad():
        plain = m(x, (4, 5))
        monkeypatch.setattr(attn, "merges_projections", lambda mixer, xs: merged.append(1) or True)
        if packed:  # bigla_packed's Triton kernels do not run on CPU: the views through bigla() instead
            monkeypatch.setattr(attn, "bigla_packed", lambda qkv, g, h, dk, **kw: attn.bigla(
                *attn.split_packed(qkv, g, h, dk), **kw))
        got = m(x, (4, 5))
    assert merged, "the forward did not ask for the merge"
    assert _rel(got, plain) <= TOL_FP32


def test_project_returns_the_gate_logits_and_their_bias_last(monkeypatch):
    m = _mixer()
    x = torch.randn(1, 12, 64)
    with torch.no_grad():
        plain = m.project(x, (3, 4), return_local=True, gate_proj=True)
        monkeypatch.setattr(attn, "merges_projections", lambda mixer, xs: True)
        got = m.project(x, (3, 4), return_local=True, gate_proj=True)
    # q, k, v, g_fwd, g_bwd, the conv output, g_proj's output, the bias it still needs
    assert len(got) == len(plain) == 8
    assert plain[-1] is None and got[-1] is m.g_proj.bias
    for a, b in zip(got[:6], plain[:6]):
        assert a.shape == b.shape and _rel(a, b) <= TOL_FP32
    assert _rel(got[6] + got[7], plain[6]) <= TOL_FP32


def test_only_gradient_free_cuda_calls_merge_at_every_width(monkeypatch):
    narrow, wide = _mixer(64, 2), _mixer(384, 6)  # 208 columns; ViG-S's 1,168
    xs = torch.randn(2, 3)
    with torch.no_grad():
        assert not attn.merges_projections(narrow, xs)  # CPU: the plain projections
    monkeypatch.setattr(attn, "rewrite_enabled", lambda x, name: name == "proj_merge")
    assert not attn.merges_projections(narrow, xs)  # gradients on: training keeps three GEMMs
    with torch.no_grad():
        assert attn.merges_projections(narrow, xs)
        assert attn.merges_projections(wide, xs)
    with torch.inference_mode():
        assert attn.merges_projections(narrow, xs)
