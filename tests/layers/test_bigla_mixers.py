"""The two BiGLA mixers against hand-written versions of the official eval path (spec §1.3 and §2.3).

The references spell out every step with plain torch ops and the naive op; the mixers run the
production path (backend "auto", the chunked torch backend on CPU).
"""
import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse

from vig.layers import GLA2D, BiGLAttention
from vig.ops.bigla import bigla_naive



def _perturb(module, seed):
    """Random norm weights and biases, so that a mixed-up weight cannot hide behind ones/zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if "norm" in name else 0.0))


def rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def plain_reference(m, x, hw):
    """Spec §1.3 GatedLinearAttention eval branch, steps 1-14 (with the paper's /2 averaging)."""
    B, N, C = x.shape
    h, w = hw
    H, kd = m.num_heads, m.key_dim
    x2d = x.transpose(1, 2).reshape(B, C, h, w)                                    # 1
    local = F.conv2d(x2d, m.in_proj[0].weight, padding=1, groups=C)              # 2
    if isinstance(m.in_proj[1], torch.nn.SiLU):
        local = F.silu(local)
    xs = local.flatten(2).transpose(1, 2)
    qkv = xs @ m.qkv_proj.weight.T                                               # 3
    q, k, v = qkv[..., :kd], qkv[..., kd:2 * kd], qkv[..., 2 * kd:]
    gk = (xs @ m.gk_proj[0].weight.T) @ m.gk_proj[1].weight.T + m.gk_proj[1].bias  # 4
    gk_f, gk_b = gk[..., :kd], gk[..., kd:]
    heads = lambda t: t.reshape(B, N, H, -1)                                     # 5 (channel = head*D + d)
    gf, gb = F.logsigmoid(gk_f) / 16, F.logsigmoid(gk_b) / 16                    # 6
    o = bigla_naive(heads(q), heads(k), heads(v), heads(gf), heads(gb))          # 7-8: (o_f + o_b) / 2
    o = rms(o, m.g_norm.weight)                                                  # 9
    loc = rms(heads(xs), m.l_norm.weight)                                        # 10
    g = torch.sigmoid(xs @ m.g_proj.weight.T + m.g_proj.bias).reshape(B, N, H, -1)  # 11
    o = (o * g + loc * (1 - g)).reshape(B, N, C)                                 # 12
    if hasattr(m, "out_act"):
        o = F.silu(o)                                                            # 13
    return o @ m.o_proj.weight.T                                                 # 14


@pytest.mark.parametrize("vig_t_quirks", [False, True])
def test_plain_mixer_matches_hand_written_eval_path(vig_t_quirks):
    torch.manual_seed(0)
    m = BiGLAttention(64, 2, use_act_in_conv=vig_t_quirks, use_out_act=vig_t_quirks)  # Dk 16, Dv 32
    _perturb(m, 1)
    hw = (5, 7)  # non-square: catches a transposed raster
    x = torch.randn(2, 35, 64)
    out = m(x, hw)
    assert out.shape == x.shape
    assert rel_rmse(out, plain_reference(m, x, hw)) < 1e-5


def hier_reference(m, x):
    """Spec §2.3 GLA2D eval, channel-first, steps 1-9."""
    B, C, h, w = x.shape
    H, kd, N = m.num_heads, m.key_dim, h * w
    local = F.conv2d(x, m.in_proj[0].weight, padding=1, groups=C)                # 1
    lin = lambda t, layer: torch.einsum("oc,bcn->bon", layer.weight, t) + (
        layer.bias[:, None] if layer.bias is not None else 0)
    flat = local.flatten(2)                                                      # [B, C, N]
    qkv = lin(flat, m.qkv_proj)                                                  # 2
    gk = lin(lin(flat, m.gk_proj[0]), m.gk_proj[1])                              # 3
    heads = lambda t: t.reshape(B, H, -1, N).permute(0, 3, 1, 2)                 # 4: 'b (h d) n -> b n h d'
    q, k, v = heads(qkv[:, :kd]), heads(qkv[:, kd:2 * kd]), heads(qkv[:, 2 * kd:])
    gf, gb = heads(F.logsigmoid(gk[:, :kd]) / 16), heads(F.logsigmoid(gk[:, kd:]) / 16)
    o = bigla_naive(q, k, v, gf, gb)                                             # 5
    g = heads(torch.sigmoid(lin(flat, m.g_proj)))                                # 6
    o = rms(o, m.g_norm.weight)                                                  # 7
    loc = rms(heads(flat), m.l_norm.weight)
    o = (o * g + loc * (1 - g)).reshape(B, N, C)
    o = o @ m.o_proj.weight.T                                                    # 9
    return o.transpose(1, 2).reshape(B, C, h, w)


def test_gla2d_matches_hand_written_eval_path():
    torch.manual_seed(0)
    m = GLA2D(64, 2)  # Dk 16, Dv 32
    _perturb(m, 2)
    x = torch.randn(2, 64, 6, 5)
    out = m(x)
    assert out.shape == x.shape
    assert rel_rmse(out, hier_reference(m, x)) < 1e-5


def test_project_layout_views_and_log_gates():
    torch.manual_seed(0)
    m = BiGLAttention(64, 2)
    q, k, v, gf, gb = m.project(torch.randn(2, 12, 64), (3, 4))
    assert q.shape == k.shape == gf.shape == gb.shape == (2, 12, 2, 16) and v.shape == (2, 12, 2, 32)
    # q, k, v are views into one qkv projection output: no copies before the op
    assert q._base is not None and q._base is k._base is v._base
    assert bool((gf <= 0).all() and (gb <= 0).all())
    m2 = GLA2D(64, 2)
    q2, k2, v2, gf2, gb2, local = m2.project(torch.randn(2, 64, 3, 4), return_local=True)
    assert q2.shape == (2, 12, 2, 16) and v2.shape == (2, 12, 2, 32) and local.shape == (2, 64, 3, 4)
    assert bool((gf2 <= 0).all())


def test_forward_uses_project(monkeypatch):
    """The viz helper relies on forward going through project(): zeroing v there must change the output."""
    torch.manual_seed(0)
    m = BiGLAttention(64, 2)
    x = torch.randn(1, 12, 64)
    ref = m(x, (3, 4))
    orig = m.project

    def zero_v(*args, **kwargs):
        q, k, v, *rest = orig(*args, **kwargs)
        return (q, k, torch.zeros_like(v), *rest)

    monkeypatch.setattr(m, "project", zero_v)
    assert not torch.allclose(m(x, (3, 4)), ref)


def test_mixer_rejects_bad_head_split():
    with pytest.raises(ValueError, match="num_heads"):
        BiGLAttention(64, 3)
    with pytest.raises(ValueError, match="expand_v"):
        GLA2D(64, 2, expand_v=2.0)


@pytest.mark.parametrize("hier", [False, True])
def test_gate_logits_into_the_op_give_the_same_mixer(hier, monkeypatch):
    """The CUDA route (logits into the op, which applies logsigmoid / gate_logit_normalizer itself) gives
    the log-decay route's output and gradients; here both run the op's torch backend in float64."""
    import vig.layers.bigla_attn as attn
    import vig.layers.gla2d as gla2d
    torch.manual_seed(0)
    m = (GLA2D(64, 2) if hier else BiGLAttention(64, 2)).double()
    _perturb(m, 4)
    x = torch.randn(2, 64, 3, 4, dtype=torch.float64) if hier else torch.randn(2, 12, 64, dtype=torch.float64)
    args = (x,) if hier else (x, (3, 4))
    calls = []

    def run(logits):
        monkeypatch.setattr(gla2d if hier else attn, "logits_into_op", lambda t: logits)
        m.zero_grad()
        out = m(*args)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in m.parameters()]

    real_project = m.project
    monkeypatch.setattr(m, "project", lambda *a, **kw: calls.append(kw["gate_logits"]) or real_project(*a, **kw))
    out_log, grads_log = run(False)
    out_logit, grads_logit = run(True)
    assert calls == [False, True]
    assert rel_rmse(out_logit, out_log) < 1e-10
    for a, b in zip(grads_logit, grads_log):
        assert rel_rmse(a, b) < 1e-10
    # what project hands the op in each mode
    logit_gf = real_project(*args, gate_logits=True)[3]
    log_gf = real_project(*args)[3]
    assert bool((logit_gf > 0).any()) and torch.allclose(F.logsigmoid(logit_gf) / m.gate_logit_normalizer, log_gf)
