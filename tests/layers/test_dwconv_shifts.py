"""The opt-in depthwise conv as nine shifted multiply-adds (bigla_attn.depthwise3x3_shifted, VIG_FUSED_ON=dwconv_shifts),
taken only under torch.compile: against F.conv2d in float64, its autocast dtype, and a mixer compiled by inductor
(CPU) with the rewrite against the plain path, with no convolution left in the generated code."""
import pytest
import torch
import torch.nn.functional as F

import vig.layers.bigla_attn as attn


def _conv2d(x, weight, hw):
    B, N, C = x.shape
    y = F.conv2d(x.transpose(1, 2).reshape(B, C, *hw), weight, padding=1, groups=C)
    return y.flatten(2).transpose(1, 2)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("hw", [(4, 5), (1, 7), (3, 3)])
def test_shifted_conv_matches_conv2d_and_its_grads(hw):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, hw[0] * hw[1], 8, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, hw[0] * hw[1], 8, generator=gen, dtype=torch.float64)
    got = attn.depthwise3x3_shifted(x, weight, hw)
    ref = _conv2d(x, weight, hw)
    errs = [_rel(got, ref)] + [_rel(a, b) for a, b in zip(torch.autograd.grad(got, (x, weight), dy),
                                                          torch.autograd.grad(ref, (x, weight), dy))]
    assert max(errs) < 1e-12, errs


def test_shifted_conv_takes_conv2ds_autocast_dtype():
    x, weight = torch.randn(1, 6, 4), torch.randn(4, 1, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attn.depthwise3x3_shifted(x, weight, (2, 3)).dtype == _conv2d(x, weight, (2, 3)).dtype


def test_mixer_compiled_with_the_rewrite_matches_the_plain_path(monkeypatch):
    """Against the same mixer compiled without it (the eager path differs from any compiled one by ~2e-7 here: the
    gates' log-decays are fp32 and inductor reorders their math)."""
    from torch._inductor.utils import run_and_get_code
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(32, 2, use_act_in_conv=True, use_out_act=True).double()
    x = torch.randn(2, 20, 32, dtype=torch.float64)

    def run(fn):
        mixer.zero_grad()
        xx = x.clone().requires_grad_()
        y = fn(xx, (4, 5))
        y.pow(2).mean().backward()
        return [y, xx.grad] + [p.grad for p in mixer.parameters()]

    def compiled():
        torch._dynamo.reset()
        return run_and_get_code(lambda: run(torch.compile(mixer, fullgraph=True)))
    plain, plain_codes = compiled()
    assert any("convolution" in code for code in plain_codes)  # the check below can see a convolution
    calls = []
    real = attn.depthwise3x3_shifted
    monkeypatch.setattr(attn, "depthwise3x3_shifted", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name: name == "dwconv_shifts")
    eager = run(mixer)
    assert calls == [], "the rewrite was taken eagerly"
    out, codes = compiled()
    assert calls, "the compiled mixer did not take the rewrite"
    assert not any("convolution" in code for code in codes), "a convolution is left in inductor's code"
    errs = [_rel(a, b) for a, b in zip(out, plain)]
    assert max(errs) < 1e-12, errs
    assert _rel(out[0], eager[0]) < 1e-6
