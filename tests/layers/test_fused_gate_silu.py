"""ViG-T's out SiLU folded into the fused 2D gate kernel (out_silu=True), forward and backward.

CPU: the kernel runs under TRITON_INTERPRET=1 in one child process (this file run as a script)
against a float64 oracle, and a ViG-T BiGLAttention with the fused dispatch forced on CPU
tensors is compared with its plain path. CUDA: bf16 against float64, no worse than plain.
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")

# (name, [B, N, H, D], dtype of o, dtype of loc and gate, out_silu): loc is the strided head view
CASES = [
    ("silu_fp32_d64", (2, 6, 3, 64), torch.float32, torch.float32, True),
    ("silu_fp32_d48", (1, 9, 2, 48), torch.float32, torch.float32, True),
    ("silu_bf16_d64", (2, 7, 3, 64), torch.bfloat16, torch.bfloat16, True),
    ("silu_mixed_d32", (1, 5, 2, 32), torch.float32, torch.bfloat16, True),
    ("nosilu_fp32_d64", (2, 4, 2, 64), torch.float32, torch.float32, False),  # the flag off is unchanged
]
KEYS = ("y", "do", "dloc", "dgp", "dwg", "dwl")


def _rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def _oracle(o, loc, gp, wg, wl, out_silu):
    y = torch.lerp(_rms(loc, wl), _rms(o, wg), torch.sigmoid(gp))
    return F.silu(y) if out_silu else y


def _plain(o, loc, gp, wg, wl, out_silu):
    """The CPU / VIG_FUSED=0 path of the mixer: two RMSNorms, a lerp, then nn.SiLU, each rounded."""
    from vig.layers.bigla_attn import gate_blend
    from vig.layers.norms import rms_norm_reference
    y = gate_blend(rms_norm_reference(o, wg, 1e-6), rms_norm_reference(loc, wl, 1e-6), torch.sigmoid(gp))
    return F.silu(y) if out_silu else y


def _inputs(shape, dt_o, dt_l, gen, device="cpu"):
    B, N, H, D = shape
    o = torch.randn(B, N, H, D, generator=gen).to(device, dt_o).requires_grad_()
    base = torch.randn(B, H * D, N, generator=gen).to(device, dt_l)
    loc = base.transpose(1, 2).unflatten(-1, (H, D)).detach().requires_grad_()
    gp = torch.randn(B, N, H, D, generator=gen).mul(2).to(device, dt_l).requires_grad_()
    wg, wl = (1 + 0.3 * torch.randn(2, D, generator=gen)).to(device).unbind(0)
    dy = torch.randn(B, N, H, D, generator=gen).to(device, torch.promote_types(dt_o, dt_l))
    return (o, loc, gp, wg.clone().requires_grad_(), wl.clone().requires_grad_()), dy


def _compare(ins, dy, out_silu):
    from vig.layers.fused.gate import gated_norm_blend_fused

    def run(fn, args):
        y = fn(*args, out_silu)
        return [y, *torch.autograd.grad(y, args, dy.to(y.dtype))]
    fused = run(lambda *a: gated_norm_blend_fused(*a[:5], 1e-6, out_silu=a[5]), ins)
    ref = run(_oracle, [t.detach().double().requires_grad_() for t in ins])
    plain = run(_plain, ins)
    r = {k: _rel(f, g) for k, f, g in zip(KEYS, fused, ref)}
    r.update({k + "_plain": _rel(p, g) for k, p, g in zip(KEYS, plain, ref)})
    r["dtypes"] = [str(t.dtype) for t in fused]
    return r


def _mixer_run(mixer, x, fused):
    os.environ["VIG_FUSED"] = "1" if fused else "0"
    mixer.zero_grad()
    xx = x.detach().clone().requires_grad_()
    y = mixer(xx, (4, 5))
    y.pow(2).mean().backward()
    return [y, xx.grad] + [p.grad for p in mixer.parameters()]


def run_cases():
    import vig.layers.bigla_attn as attn
    import vig.layers.norms as norms
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, shape, dt_o, dt_l, out_silu in CASES:
        out[name] = _compare(*_inputs(shape, dt_o, dt_l, gen), out_silu)
    calls = []
    real = attn.norm_gate_blend

    def spy(*a, **k):
        calls.append(k.get("out_silu", False))
        return real(*a, **k)
    attn.norm_gate_blend = spy
    for mod in (attn, norms):  # the fused dispatch on CPU tensors, VIG_FUSED still obeyed
        mod.fused_enabled = lambda t, name="": os.environ.get("VIG_FUSED", "1") != "0"
    attn.fused_op_enabled = lambda t, name="": name == "gate_silu" and os.environ.get("VIG_FUSED", "1") != "0"
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True)
    with torch.no_grad():
        mixer.g_norm.weight.add_(0.2 * torch.randn(32))
        mixer.l_norm.weight.add_(0.2 * torch.randn(32))
    x = torch.randn(2, 20, 64)
    plain, fused = _mixer_run(mixer, x, False), _mixer_run(mixer, x, True)
    names = ["y", "dx"] + [n for n, _ in mixer.named_parameters()]
    out["mixer"] = {n: _rel(f, p) for n, f, p in zip(names, fused, plain)}
    out["mixer_out_silu_calls"] = calls
    return out


@pytest.mark.parametrize("name,shape,dt_o,dt_l,out_silu", CASES)
def test_interpreted_gate_silu_matches_float64(interpreted, name, shape, dt_o, dt_l, out_silu):
    r = interpreted[name]
    assert r["dtypes"] == [str(torch.promote_types(dt_o, dt_l)), str(dt_o), str(dt_l), str(dt_l),
                           "torch.float32", "torch.float32"]
    fp32 = dt_o == dt_l == torch.float32
    tol = 1e-5 if fp32 else 5e-3
    for k in KEYS:
        assert r[k] <= tol, f"{name}: {k} relative RMSE {r[k]:.2e} > {tol:.0e} ({r})"
        if fp32:
            assert r[k] <= 1.05 * r[k + "_plain"] + 1e-7, f"{name}: {k} worse than the plain path ({r})"


def test_interpreted_vig_t_mixer_fused_equals_plain(interpreted):
    # plain path calls the gate without the flag (SiLU by the module), fused path folds it in
    assert interpreted["mixer_out_silu_calls"] == [False, True]
    r = interpreted["mixer"]
    assert {"y", "dx", "g_norm.weight", "l_norm.weight", "o_proj.weight"} <= set(r)
    for k, e in r.items():
        assert e <= 1e-5, f"BiGLAttention fused vs plain: {k} relative RMSE {e:.2e}"


def test_cpu_path_keeps_the_out_act_module():
    from vig.layers.bigla_attn import BiGLAttention, norm_gate_blend
    torch.manual_seed(0)
    mixer = BiGLAttention(32, 2, use_out_act=True)
    seen = []
    mixer.out_act.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    mixer(torch.randn(2, 12, 32), (3, 4))
    assert seen == [torch.Size([2, 12, 32])]
    o, loc, gp = torch.randn(3, 2, 5, 2, 16)
    assert torch.equal(norm_gate_blend(mixer, o, loc, gp, out_silu=True), F.silu(norm_gate_blend(mixer, o, loc, gp)))


@cuda
@pytest.mark.parametrize("dt_o,dt_l", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
                                       (torch.float32, torch.bfloat16), (torch.float32, torch.float32)])
def test_gate_silu_on_cuda(dt_o, dt_l):
    """bf16/fp16: within 5e-3 of float64 and no worse than the plain path; fp32: within 1e-5."""
    gen = torch.Generator().manual_seed(0)
    r = _compare(*_inputs((4, 196, 3, 64), dt_o, dt_l, gen, "cuda"), True)
    tol = 1e-5 if dt_o == dt_l == torch.float32 else 5e-3
    for k in KEYS:
        assert r[k] <= tol and r[k] <= 1.25 * r[k + "_plain"] + 1e-7, f"{k}: {r}"


@cuda
@pytest.mark.parametrize("autocast", [False, True])
def test_vig_t_mixer_fused_matches_plain_on_cuda(monkeypatch, autocast):
    from vig.layers.bigla_attn import BiGLAttention
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    mixer = BiGLAttention(192, 3, use_act_in_conv=True, use_out_act=True).cuda()
    x = torch.randn(2, 14 * 14, 192, device="cuda")
    monkeypatch.delenv("VIG_FUSED_OFF", raising=False)  # the SiLU folded into the gate kernel is the default

    def run(fused, ac):
        monkeypatch.setenv("VIG_FUSED", "1" if fused else "0")
        mixer.zero_grad()
        xx = x.clone().requires_grad_()
        with torch.autocast("cuda", torch.bfloat16, enabled=ac):
            y = mixer(xx, (14, 14))
        y.float().pow(2).mean().backward()
        return [y.detach(), xx.grad] + [p.grad.clone() for p in mixer.parameters()]
    ref, plain, fused = run(False, False), run(False, autocast), run(True, autocast)
    for i, (f, p, r) in enumerate(zip(fused, plain, ref)):
        assert f.dtype == p.dtype, i
        if not autocast:
            assert _rel(f, p) <= 1e-5, f"{i}: fused vs plain {_rel(f, p):.2e}"
        else:
            e_f, e_p = _rel(f, r), _rel(p, r)
            assert _rel(f, p) <= 5e-3 or e_f <= 1.25 * e_p + 1e-3, f"{i}: fused {e_f:.2e}, plain {e_p:.2e}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run_cases()))
