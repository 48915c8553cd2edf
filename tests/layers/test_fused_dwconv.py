"""The mixer's depthwise 3x3 conv (+ SiLU) as the Triton custom op vig::dwconv3x3 (opt-in: dwconv_triton).

CPU: the kernels run under TRITON_INTERPRET=1 in one child process (this file run as a script, through the
`interpreted` fixture of tests/conftest.py): y, dx, dw against F.conv2d in float64 on non-square grids, C not a
power of two and over one channel block, a strided x; the op compiled with fullgraph against eager;
torch.library.opcheck; a BiGLAttention with the op forced on against its plain path. CUDA: bf16 against
float64 at a ViG-T shape, the autocast dtype of the nn.Conv2d path, offsets past 2^31.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from fused_checks import assert_import_leaves_unloaded, rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")
# (name, B, h, w, C, dtype of x and weight, silu, strided x); the kernels' channel block is 64
CASES = [("fp32_silu_5x7_c48", 2, 5, 7, 48, torch.float32, True, False),
         ("fp32_plain_1x6_c80", 2, 1, 6, 80, torch.float32, False, False),
         ("fp32_silu_4x3_c80_strided", 2, 4, 3, 80, torch.float32, True, True),
         ("bf16_silu_5x7_c48", 2, 5, 7, 48, torch.bfloat16, True, False),
         ("bf16_plain_3x5_c80_strided", 1, 3, 5, 80, torch.bfloat16, False, True)]
KEYS = ("y", "dx", "dw")
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def _oracle(x, weight, hw, silu):
    B, N, C = x.shape
    y = F.conv2d(x.transpose(1, 2).reshape(B, C, *hw), weight, padding=1, groups=C).flatten(2).transpose(1, 2)
    return F.silu(y) if silu else y


def _inputs(B, h, w, C, dtype, strided, gen, device="cpu"):
    x = torch.randn(B, h * w, C + 16 * strided, generator=gen).to(device, dtype)[..., :C]  # row stride C + 16
    weight = torch.randn(C, 1, 3, 3, generator=gen) / 3
    dy = torch.randn(B, h * w, C, generator=gen)
    return x.requires_grad_(), weight.to(device, dtype).requires_grad_(), dy.to(device, dtype)


def _run(fn, x, weight, dy, hw, silu):
    y = fn(x, weight, hw, silu)
    return [y, *torch.autograd.grad(y, (x, weight), dy.to(y.dtype))]


def _op_vs_oracle(x, weight, dy, hw, silu):
    from vig.layers.fused.dwconv_op import dwconv3x3
    got = _run(dwconv3x3, x, weight, dy, hw, silu)
    ref = _run(_oracle, x.detach().double().requires_grad_(), weight.detach().double().requires_grad_(), dy, hw,
               silu)
    errs = {k: _rel(g, r) for k, g, r in zip(KEYS, got, ref)}
    errs["dtypes"] = [str(t.dtype) for t in got]
    return got, errs


def run_cases():
    from vig.layers.fused.dwconv_op import dwconv3x3, dwconv3x3_op
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, B, h, w, C, dtype, silu, strided in CASES:
        x, weight, dy = _inputs(B, h, w, C, dtype, strided, gen)
        eager, errs = _op_vs_oracle(x, weight, dy, (h, w), silu)
        errs["strided"] = int(not x.is_contiguous())
        torch._dynamo.reset()
        compiled = _run(torch.compile(dwconv3x3, backend="aot_eager", fullgraph=True), x, weight, dy, (h, w), silu)
        errs.update({k + "_compiled_vs_eager": _rel(c, e) for k, c, e in zip(KEYS, compiled, eager)})
        report = torch.library.opcheck(dwconv3x3_op, (x, weight, h, w, silu))
        errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
        out[name] = errs
    import vig.layers.fused.dwconv as kernels
    kernels._GRAD_PROGRAMS = 1  # one backward program per channel block walks all position blocks (its loop)
    for name, B, h, w, C, dtype, silu, strided in CASES[:3]:
        out[name + "_one_program"] = _op_vs_oracle(*_inputs(B, h, w, C, dtype, strided, gen), (h, w), silu)[1]
    out["mixer"] = _mixer_with_op()
    return out


def _mixer_with_op():
    """BiGLAttention(64, 2, use_act_in_conv=True) with the op forced on CPU tensors, eager and compiled,
    against its plain eager path."""
    import vig.layers.bigla_attn as attn
    import vig.layers.fused.dwconv_op as op
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(64, 2, use_act_in_conv=True)
    x = torch.randn(2, 20, 64)

    def run(fn):
        mixer.zero_grad()
        xx = x.clone().requires_grad_()
        y = fn(xx, (4, 5))
        y.pow(2).mean().backward()
        return [y, xx.grad] + [p.grad for p in mixer.parameters()]
    plain = run(mixer)
    calls, real = [], op.dwconv3x3
    op.dwconv3x3 = lambda *a: calls.append(a[2:]) or real(*a)
    attn.fused_op_enabled = lambda t, name="": name == "dwconv_triton"
    eager = run(mixer)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm
    torch._dynamo.reset()
    op.dwconv3x3 = real
    compiled = run(torch.compile(mixer, backend=backend, fullgraph=True))
    names = ["y", "dx"] + [n for n, _ in mixer.named_parameters()]
    errs = {n + "_eager": _rel(f, p) for n, f, p in zip(names, eager, plain)}
    errs.update({n + "_compiled": _rel(f, p) for n, f, p in zip(names, compiled, plain)})
    return {"errs": errs, "eager_calls": [[list(a[0]), a[1]] for a in calls],
            "op_in_graph": int(any("vig.dwconv3x3" in g for g in graphs))}


@pytest.mark.parametrize("name,dtype", [(c[0], c[5]) for c in CASES])
def test_interpreted_op_matches_float64_and_compiles(interpreted, name, dtype):
    r = interpreted[name]
    assert r["dtypes"] == [str(dtype)] * 3
    assert r["strided"] == ("strided" in name)
    for k in KEYS:
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"
        assert r[k + "_compiled_vs_eager"] <= 1e-6, f"{name}: compiled {k} differs from eager ({r})"
    assert r["opcheck"] == {}, r["opcheck"]


@pytest.mark.parametrize("name", [c[0] for c in CASES[:3]])
def test_interpreted_backward_loop_over_position_blocks(interpreted, name):
    r = interpreted[name + "_one_program"]
    assert all(r[k] <= 1e-5 for k in KEYS), r


def test_interpreted_mixer_with_the_op_matches_plain(interpreted):
    r = interpreted["mixer"]
    assert r["eager_calls"] == [[[4, 5], True]] and r["op_in_graph"] == 1
    assert {"y_eager", "dx_eager", "in_proj.0.weight_eager", "in_proj.0.weight_compiled"} <= set(r["errs"])
    for k, e in r["errs"].items():
        assert e <= 1e-5, f"{k}: BiGLAttention with the dwconv op differs from the plain path by {e:.2e}"


def test_registering_the_op_loads_no_kernel():
    assert_import_leaves_unloaded(("vig.layers.fused.dwconv_op", "vig.layers.bigla_attn"), "vig.layers.fused.dwconv")


def test_op_is_opt_in():
    from vig.layers.fused import OPT_IN
    assert "dwconv_triton" in OPT_IN


def test_op_checks_its_arguments():
    from vig.layers.fused.dwconv_op import dwconv3x3
    x, weight = torch.randn(2, 12, 8), torch.randn(8, 1, 3, 3)
    with pytest.raises(ValueError, match=r"x \(2, 12, 8\) must be \[B, N, C\] with N == h \* w = 3 \* 5"):
        dwconv3x3(x, weight, (3, 5), True)
    with pytest.raises(ValueError, match=r"must be \[B, N, C\]"):
        dwconv3x3(x[0], weight, (3, 4), True)
    with pytest.raises(ValueError, match=r"weight \(8, 1, 5, 5\) must be \[C, 1, 3, 3\] with C = 8"):
        dwconv3x3(x, torch.randn(8, 1, 5, 5), (3, 4), False)
    with pytest.raises(ValueError, match=r"weight \(4, 1, 3, 3\)"):
        dwconv3x3(x, torch.randn(4, 1, 3, 3), (3, 4), False)


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("silu", [True, False])
def test_op_on_cuda_matches_float64(dtype, silu):
    x, weight, dy = _inputs(8, 14, 14, 192, dtype, False, torch.Generator().manual_seed(1), "cuda")
    _, errs = _op_vs_oracle(x, weight, dy, (14, 14), silu)
    assert all(errs[k] <= TOL[dtype] for k in KEYS), errs


@cuda
def test_autocast_output_dtype_matches_the_conv2d_path(monkeypatch):
    from vig.layers.bigla_attn import BiGLAttention
    mixer = BiGLAttention(192, 3, use_act_in_conv=True).cuda()
    x = torch.randn(2, 196, 192, device="cuda")

    def run(on):
        monkeypatch.setenv("VIG_FUSED_ON", "dwconv_triton" if on else "")
        mixer.zero_grad()
        xx = x.clone().requires_grad_()
        with torch.autocast("cuda", torch.bfloat16):
            y = mixer.local_conv(xx, (14, 14))
        y.float().pow(2).mean().backward()
        return y, xx.grad, mixer.in_proj[0].weight.grad
    fused, plain = run(True), run(False)
    assert [t.dtype for t in fused] == [t.dtype for t in plain] == [torch.bfloat16, torch.float32, torch.float32]
    assert all(_rel(f, p) <= 1e-2 for f, p in zip(fused, plain))


@cuda
def test_offsets_past_int32():
    """B * N * C > 2^31: the last image's y, dx and dw (dy is zero elsewhere) against the op on that image alone."""
    from vig.layers.fused.dwconv_op import dwconv3x3
    B, N, C = 2 ** 31 // (196 * 192) + 2, 196, 192
    gen = torch.Generator("cuda").manual_seed(2)
    x = torch.randn(B, N, C, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
    weight = torch.randn(C, 1, 3, 3, device="cuda", generator=gen).div(3).requires_grad_()
    dy = torch.randn(1, N, C, device="cuda", dtype=torch.bfloat16, generator=gen)
    big = _run(lambda *a: dwconv3x3(*a)[-1:], x, weight, dy, (14, 14), True)
    small = _run(dwconv3x3, x[-1:].detach().clone().requires_grad_(), weight, dy, (14, 14), True)
    assert torch.equal(big[0], small[0]) and torch.equal(big[1][-1:], small[1])
    assert _rel(big[2], small[2]) <= 1e-6


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run_cases()))
