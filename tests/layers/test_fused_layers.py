"""The layers' fused CUDA path against their plain-PyTorch path, and the dispatch rules on CPU."""
import pytest
import torch
from numerics import rel_rmse

from vig.layers import GLABlock, RMSNorm, VSSBlock
from vig.layers.bigla_attn import gate_blend
from vig.layers.fused import fused_enabled
from vig.layers.mlp import swiglu
from vig.layers.norms import rms_norm_reference

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")


def test_cpu_takes_the_plain_path_bit_for_bit():
    x = torch.randn(2, 5, 3, 16)
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.mul_(1.5)
    assert not fused_enabled(x)
    assert torch.equal(norm(x), rms_norm_reference(x, norm.weight, norm.eps))
    h = torch.randn(4, 6, 2 * 8)
    a, b = h.chunk(2, dim=-1)
    assert torch.equal(swiglu(h), torch.nn.functional.silu(a) * b)


def test_fused_switch_env(monkeypatch):
    x = torch.randn(3)
    monkeypatch.setenv("VIG_FUSED", "0")
    assert not fused_enabled(x)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.bfloat16, 5e-3)])
def test_gate_blend_matches_the_two_product_form(dtype, tol):
    gen = torch.Generator().manual_seed(1)
    o, loc = torch.randn(2, 2, 7, 3, 16, generator=gen).to(dtype)
    g = torch.sigmoid(torch.randn(2, 7, 3, 16, generator=gen)).to(dtype)
    got = gate_blend(o, loc, g)
    ref = (o.double() * g.double() + loc.double() * (1 - g.double()))
    assert got.dtype == dtype and got.shape == o.shape
    assert rel_rmse(got, ref) <= tol


def test_gate_blend_promotes_mixed_dtypes():
    o = torch.randn(4, 8)
    loc = torch.randn(4, 8).bfloat16()
    g = torch.rand(4, 8).bfloat16()
    out = gate_blend(o, loc, g)
    assert out.dtype == torch.float32
    assert rel_rmse(out, o * g.float() + loc.float() * (1 - g.float())) <= 1e-6


def test_fused_entry_points_reject_bad_input():
    pytest.importorskip("triton")
    from vig.layers.fused.rmsnorm import rms_norm_fused
    from vig.layers.fused.swiglu import swiglu_fused
    with pytest.raises(ValueError, match="weight shape"):
        rms_norm_fused(torch.randn(2, 8), torch.ones(6), 1e-6)
    with pytest.raises(ValueError, match="odd"):
        swiglu_fused(torch.randn(2, 7))
    with pytest.raises(ValueError, match="contiguous"):
        swiglu_fused(torch.randn(8, 4).t())


def _run(block, x, fused, monkeypatch, autocast, *args):
    monkeypatch.setenv("VIG_FUSED", "1" if fused else "0")
    block.zero_grad()
    xx = x.detach().clone().requires_grad_()
    with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
        y = block(xx, *args)
    y.float().pow(2).mean().backward()
    grads = [p.grad.detach().clone() for p in block.parameters()]
    return y.detach(), xx.grad.detach(), grads


@cuda
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("kind", ["vig", "vig_h"])
def test_block_fused_matches_plain_on_cuda(monkeypatch, kind, autocast):
    """fp32: fused equals plain to 1e-5. bf16 autocast: against the fp32 plain block, the fused
    path is within 5e-3 or no worse than the plain bf16 path (which rounds more often)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    if kind == "vig":
        block, x, args = GLABlock(64, 2, use_act_in_conv=True, use_out_act=True), torch.randn(2, 36, 64), ((6, 6),)
    else:
        block, x, args = VSSBlock(64, 2), torch.randn(2, 64, 6, 6), ()
    block, x = block.cuda(), x.cuda()
    with torch.no_grad():  # non-trivial norm weights so their grads and scaling are exercised
        for p in block.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    ref = _run(block, x, False, monkeypatch, False, *args)
    plain = _run(block, x, False, monkeypatch, autocast, *args)
    fused = _run(block, x, True, monkeypatch, autocast, *args)
    names = ["y", "dx"] + [n for n, _ in block.named_parameters()]
    for name, f, p, r in zip(names, [*fused[:2], *fused[2]], [*plain[:2], *plain[2]], [*ref[:2], *ref[2]]):
        assert f.dtype == p.dtype, name
        if not autocast:
            assert rel_rmse(f, p) <= 1e-5, f"{name}: fused vs plain {rel_rmse(f, p):.2e}"
        else:
            e_f, e_p = rel_rmse(f, r), rel_rmse(p, r)
            assert rel_rmse(f, p) <= 5e-3 or e_f <= 1.25 * e_p + 1e-3, f"{name}: fused {e_f:.2e}, plain {e_p:.2e}"


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_fused_no_worse_than_plain_on_cuda(dtype):
    from vig.layers.fused.rmsnorm import rms_norm_fused
    x = torch.randn(4, 50, 3, 64, device="cuda").to(dtype).requires_grad_()
    w = (1 + 0.2 * torch.randn(64, device="cuda")).requires_grad_()
    dy = torch.randn_like(x)
    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    yr = xr * torch.rsqrt(xr.pow(2).mean(-1, keepdim=True) + 1e-6) * wr
    ref = [yr, *torch.autograd.grad(yr, (xr, wr), dy.double())]
    outs = {}
    for name, fn in (("fused", rms_norm_fused), ("plain", rms_norm_reference)):
        y = fn(x, w, 1e-6)
        outs[name] = [y, *torch.autograd.grad(y, (x, w), dy)]
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    for f, p, r in zip(outs["fused"], outs["plain"], ref):
        assert f.dtype == p.dtype
        assert rel_rmse(f, r) <= tol and rel_rmse(f, r) <= 1.25 * rel_rmse(p, r) + 1e-7


def test_norm_gate_blend_cpu_path_matches_the_release_formula():
    from vig.layers.bigla_attn import BiGLAttention, norm_gate_blend
    torch.manual_seed(0)
    mixer = BiGLAttention(32, 2)
    with torch.no_grad():
        mixer.g_norm.weight.add_(0.2 * torch.randn(16))
        mixer.l_norm.weight.add_(0.2 * torch.randn(16))
    o, loc, gp = torch.randn(3, 2, 5, 2, 16)
    got = norm_gate_blend(mixer, o, loc, gp)
    g = torch.sigmoid(gp)
    ref = mixer.g_norm(o) * g + mixer.l_norm(loc) * (1 - g)
    assert rel_rmse(got, ref) <= 1e-6


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gate_fused_matches_plain_on_cuda(monkeypatch, dtype):
    """Against a float64 oracle: fp32 within 1e-5 of plain; bf16 within 5e-3 or no worse than plain."""
    from vig.layers.bigla_attn import BiGLAttention, norm_gate_blend
    torch.manual_seed(0)
    mixer = BiGLAttention(128, 2).cuda()
    with torch.no_grad():
        mixer.g_norm.weight.add_(0.2 * torch.randn_like(mixer.g_norm.weight))
    base = torch.randn(3, 128, 40, device="cuda").to(dtype)
    loc = base.transpose(1, 2).unflatten(-1, (2, 64))
    o, gp = torch.randn(2, 3, 40, 2, 64, device="cuda").to(dtype)
    wg, wl = mixer.g_norm.weight, mixer.l_norm.weight
    outs = []
    for fused in ("0", "1", "ref"):
        monkeypatch.setenv("VIG_FUSED", fused)
        ins = [t.detach().clone().to(torch.float64 if fused == "ref" else dtype).requires_grad_() for t in (o, loc, gp)]
        mixer.zero_grad()
        if fused == "ref":
            ws = [w.detach().double().requires_grad_() for w in (wg, wl)]
            y = torch.lerp(_rms64(ins[1], ws[1]), _rms64(ins[0], ws[0]), torch.sigmoid(ins[2]))
            y.pow(2).sum().backward()
            outs.append([y, *(t.grad for t in ins), ws[0].grad, ws[1].grad])
        else:
            y = norm_gate_blend(mixer, *ins)
            y.float().pow(2).sum().backward()
            outs.append([y, *(t.grad for t in ins), wg.grad, wl.grad])
    for i, (f, p, r) in enumerate(zip(outs[1], outs[0], outs[2])):
        assert f.dtype == p.dtype
        if dtype == torch.float32:
            assert rel_rmse(f, p) <= 1e-5, f"output {i}: fused vs plain {rel_rmse(f, p):.2e}"
        else:
            e_f, e_p = rel_rmse(f, r), rel_rmse(p, r)
            assert rel_rmse(f, p) <= 5e-3 or e_f <= 1.25 * e_p + 1e-3, f"output {i}: fused {e_f:.2e}, plain {e_p:.2e}"


def _rms64(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def test_channels_last_local_conv_matches_nchw_path(monkeypatch):
    """The CUDA-only channels-last conv route, run on CPU by forcing the switch, equals the NCHW one."""
    import vig.layers.bigla_attn as mod
    torch.manual_seed(0)
    mixer = mod.BiGLAttention(32, 2, use_act_in_conv=True)
    x = torch.randn(2, 4 * 5, 32)
    plain = mixer.local_conv(x, (4, 5))
    monkeypatch.setattr(mod, "fused_enabled", lambda t, name="": True)
    cl = mixer.local_conv(x, (4, 5))
    assert cl.shape == plain.shape == x.shape and cl.is_contiguous()
    assert rel_rmse(cl, plain) <= 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_single_fusions_can_be_switched_off(monkeypatch):
    from vig.layers.fused import fused_enabled
    x = torch.zeros(2, device="cuda")
    monkeypatch.setenv("VIG_FUSED_OFF", "gate,swiglu")
    assert not fused_enabled(x, "gate") and not fused_enabled(x, "swiglu")
    assert fused_enabled(x, "rmsnorm") and fused_enabled(x)
    assert not fused_enabled(x, "add_rmsnorm")  # opt-in
    monkeypatch.setenv("VIG_FUSED_ON", "add_rmsnorm")
    assert fused_enabled(x, "add_rmsnorm")
    monkeypatch.setenv("VIG_FUSED", "0")
    assert not fused_enabled(x, "rmsnorm")


def test_fusions_never_on_cpu():
    from vig.layers.fused import fused_enabled
    assert not fused_enabled(torch.zeros(2), "rmsnorm")
