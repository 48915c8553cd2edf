"""The mixer's depthwise 3x3 conv + SiLU as the custom op vig::dwconv3x3 (opt-in VIG_FUSED_ON=dwconv_op on CUDA).

CPU: the kernels run under TRITON_INTERPRET=1 in one child process (this file run as a script): the op's output and
both grads against float64 F.conv2d, the op compiled with fullgraph against the op eager, torch.library.opcheck,
and a compiled BiGLA mixer with the op against its plain path. CUDA: bf16 against float64 at ViG-T's shape.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from fused_checks import (assert_compiled_matches_plain, assert_import_leaves_unloaded, compiled_against_plain,
                          rel_rmse as _rel)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")
# (name, images, h, w, channels, SiLU, dtype): channels off the 64-channel tile and on it (EVEN_C: no channel mask),
# odd grids, more token tiles than the weight-gradient launch has programs (its loop), 1-row and 1-column images
CASES = [("fp32_silu", 4, 6, 7, 130, True, torch.float32), ("fp32_plain", 2, 5, 3, 64, False, torch.float32),
         ("bf16_silu", 3, 9, 10, 72, True, torch.bfloat16), ("fp32_thin", 3, 1, 9, 16, True, torch.float32),
         ("fp32_column", 2, 11, 1, 8, False, torch.float32), ("bf16_silu_even", 2, 7, 6, 128, True, torch.bfloat16)]
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def _conv_reference(x, w, hw, act):
    (h, ww), C = hw, x.shape[-1]
    img = x.view(-1, h, ww, C).permute(0, 3, 1, 2)
    z = F.conv2d(img, w, padding=1, groups=C).permute(0, 2, 3, 1).reshape(-1, C)
    return F.silu(z) if act else z


def _op_vs_float64(x, w, hw, act, dy_gen):
    from vig.layers.fused.dwconv_op import dwconv3x3_op
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    y = dwconv3x3_op(x, w, hw[0], hw[1], act)
    dy = torch.randn(y.shape, generator=dy_gen).to(y.device, y.dtype)
    dx, dw = torch.autograd.grad(y, (x, w), dy)
    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    yr = _conv_reference(xr, wr, hw, act)
    dxr, dwr = torch.autograd.grad(yr, (xr, wr), dy.double())
    errs = {"y": _rel(y, yr), "dx": _rel(dx, dxr), "dw": _rel(dw, dwr),
            "dtypes": [str(t.dtype) for t in (y, dx, dw)]}
    return (y, dx, dw), errs


def run_cases():
    from vig.layers.fused.dwconv_op import dwconv3x3_backward_op, dwconv3x3_op
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, n, h, w, C, act, dtype in CASES:
        x = torch.randn(n * h * w, C, generator=gen).to(dtype)
        wt = torch.randn(C, 1, 3, 3, generator=gen).mul(0.4).to(dtype)
        eager, errs = _op_vs_float64(x, wt, (h, w), act, torch.Generator().manual_seed(1))
        torch._dynamo.reset()
        compiled_fn = torch.compile(lambda a, b: dwconv3x3_op(a, b, h, w, act), backend="aot_eager", fullgraph=True)
        xc, wc = x.clone().requires_grad_(), wt.clone().requires_grad_()
        yc = compiled_fn(xc, wc)
        dy = torch.randn(yc.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        grads = torch.autograd.grad(yc, (xc, wc), dy)
        for k, got, ref in zip(("y", "dx", "dw"), (yc, *grads), eager):
            errs[k + "_compiled_vs_eager"] = _rel(got, ref)
        report = torch.library.opcheck(dwconv3x3_op, (x.clone().requires_grad_(), wt.clone().requires_grad_(),
                                                      h, w, act), raise_exception=False)
        errs["opcheck"] = {k: str(v)[:300] for k, v in report.items() if v != "SUCCESS"}
        # the backward op alone: aot_eager above does not compare its outputs' strides with its fake's
        report = torch.library.opcheck(dwconv3x3_backward_op, (x, wt, dy, h, w, act), raise_exception=False)
        errs["opcheck"].update({"backward_" + k: str(v)[:300] for k, v in report.items() if v != "SUCCESS"})
        out[name] = errs
    out["mixer"] = _compiled_mixer()
    return out


def _compiled_mixer():
    """ViG-T's mixer (SiLU after the conv) compiled with the op's route forced on for CPU tensors, against its plain
    eager path; the op must be in the compiled graph."""
    import vig.layers.bigla_attn as attn
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(32, 2, use_act_in_conv=True, use_out_act=True)
    hw = (3, 5)
    x = torch.randn(2, hw[0] * hw[1], 32)
    return compiled_against_plain(attn, mixer, x, ("dwconv_op",), "vig.dwconv3x3", hw)


@pytest.mark.parametrize("name,dtype", [(c[0], c[-1]) for c in CASES])
def test_interpreted_op_matches_float64_and_compiles(interpreted, name, dtype):
    r = interpreted[name]
    assert r["dtypes"] == [str(dtype)] * 3
    for k in ("y", "dx", "dw"):
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"
        assert r[k + "_compiled_vs_eager"] <= 1e-6, f"{name}: compiled {k} differs from eager ({r})"
    assert r["opcheck"] == {}, r["opcheck"]


def test_interpreted_compiled_mixer_matches_plain(interpreted):
    assert_compiled_matches_plain(interpreted["mixer"], 1, "mixer")


def test_registering_the_op_loads_no_kernel():
    assert_import_leaves_unloaded(("vig.layers.fused.dwconv_op", "vig.layers.bigla_attn"), "vig.layers.fused.dwconv")


def test_op_is_opt_in(monkeypatch):
    from vig.layers.fused import _triton_importable, fused_op_enabled
    x = torch.empty(1, device="meta")
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.delenv("VIG_FUSED_ON", raising=False)
    assert not fused_op_enabled(x, "dwconv_op")
    monkeypatch.setenv("VIG_FUSED_ON", "dwconv_op")
    assert fused_op_enabled(x, "dwconv_op") == _triton_importable()


@pytest.mark.parametrize("x_shape,w_shape,hw,dtype,match", [
    ((12, 4), (4, 1, 3, 3), (2, 2), torch.float64,
     r"^dwconv3x3: weight dtype torch.float32 differs from x.s torch.float64"),
    ((12, 4), (4, 1, 3, 3), (5, 2), torch.float32, r"^dwconv3x3: 12 token rows are not a whole number of 5 x 2"),
    ((12, 4), (4, 1, 5, 5), (2, 3), torch.float32, r"^dwconv3x3: weight must be \[C, 1, 3, 3\] = \[4, 1, 3, 3\]"),
    ((2, 6, 4), (4, 1, 3, 3), (2, 3), torch.float32, r"^dwconv3x3: x must be contiguous token rows \[M, C\]"),
])
def test_op_checks_its_arguments(x_shape, w_shape, hw, dtype, match):
    from vig.layers.fused.dwconv_op import dwconv3x3_op
    with pytest.raises(ValueError, match=match):
        dwconv3x3_op(torch.randn(x_shape, dtype=dtype), torch.randn(w_shape), hw[0], hw[1], True)


def test_op_rejects_cpu_tensors_and_integer_dtypes():
    from vig.layers.fused.dwconv_op import dwconv3x3_op
    with pytest.raises(ValueError, match=r"^dwconv3x3: the Triton kernels need CUDA tensors, got tensors on cpu"):
        dwconv3x3_op(torch.randn(12, 4), torch.randn(4, 1, 3, 3), 3, 4, False)
    with pytest.raises(TypeError, match=r"^dwconv3x3: x must be fp32, bf16 or fp16, got torch.int32"):
        dwconv3x3_op(torch.ones(12, 4, dtype=torch.int32), torch.ones(4, 1, 3, 3, dtype=torch.int32), 3, 4, False)


def test_op_rejects_2_31_token_rows():
    from vig.layers.fused.dwconv_op import check_dwconv_args
    x = torch.empty(2 ** 31, 1, device="meta")
    with pytest.raises(ValueError, match=r"^dwconv3x3: 2147483648 token rows; the kernels take token indices in 32"):
        check_dwconv_args(x, torch.empty(1, 1, 3, 3, device="meta"), 1, 1)


def test_op_rejects_strided_rows():
    from vig.layers.fused.dwconv_op import dwconv3x3_op
    with pytest.raises(ValueError, match=r"^dwconv3x3: x must be contiguous"):
        dwconv3x3_op(torch.randn(4, 12).t(), torch.randn(4, 1, 3, 3), 3, 4, False)


def test_flop_counter_counts_the_op_as_the_conv_it_replaces():
    """On meta tensors (the fake kernels), forward and backward, against F.conv2d's count under vig's counter."""
    from vig.bench.flops import count_flops
    from vig.layers.fused.dwconv_op import dwconv3x3_op
    B, h, w, C = 2, 5, 6, 8
    x = torch.empty(B * h * w, C, device="meta", requires_grad=True)
    wt = torch.empty(C, 1, 3, 3, device="meta", requires_grad=True)
    _, ours = count_flops(lambda: dwconv3x3_op(x, wt, h, w, True).sum().backward())
    img = torch.empty(B, C, h, w, device="meta", requires_grad=True)
    _, conv = count_flops(lambda: F.conv2d(img, wt, padding=1, groups=C).sum().backward())
    assert ours["total"] == conv["total"] == 3 * 2 * 9 * B * h * w * C, (ours, conv)


@cuda
@pytest.mark.parametrize("act", (True, False))
def test_op_on_cuda_bf16_matches_float64(act):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8 * 196, 192, generator=gen).to("cuda", torch.bfloat16)
    w = torch.randn(192, 1, 3, 3, generator=gen).mul(0.4).to("cuda", torch.bfloat16)
    _, errs = _op_vs_float64(x, w, (14, 14), act, torch.Generator().manual_seed(3))
    assert max(errs["y"], errs["dx"], errs["dw"]) <= 5e-3, errs


@cuda
def test_mixer_under_autocast_matches_plain_path(monkeypatch):
    """The mixer's route (autocast casts x and the fp32 weight to bf16, as F.conv2d would) against cuDNN's conv."""
    from vig.layers.bigla_attn import BiGLAttention
    torch.manual_seed(0)
    mixer = BiGLAttention(192, 3, use_act_in_conv=True, use_out_act=True).cuda()
    x = torch.randn(4, 196, 192, device="cuda")
    outs = {}
    for route in ("", "dwconv_op"):
        monkeypatch.setenv("VIG_FUSED_ON", route)
        with torch.autocast("cuda", torch.bfloat16):
            outs[route] = mixer.local_conv(x, (14, 14))
    assert outs["dwconv_op"].dtype == outs[""].dtype == torch.bfloat16
    assert _rel(outs["dwconv_op"], outs[""]) <= 5e-3


if __name__ == "__main__":
    torch.set_num_threads(1)  # the child of one pytest-xdist worker: one core
    print(json.dumps(run_cases()))
