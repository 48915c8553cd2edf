"""The fused RMSNorm / SwiGLU Triton kernels under TRITON_INTERPRET=1 on CPU, forward and backward.

Interpreter mode must be on before triton decorates the kernels, and other tests in the same
worker may have imported them already, so all cases run in one child process (this file run
as a script) that prints relative errors as JSON. The oracle is the plain-PyTorch path in
float64 on the same (possibly bf16-rounded) inputs.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse as _rel

# (name, shape, dtype, strided): strided = the [B, N, H, D] head view of a [B, C, N] tensor
NORM_CASES = [
    ("rms_fp32_d64", (2, 5, 3, 64), torch.float32, False),
    ("rms_fp32_d48_strided", (2, 7, 2, 48), torch.float32, True),
    ("rms_fp32_d192_rows33", (33, 192), torch.float32, False),
    ("rms_bf16_d64_strided", (2, 9, 3, 64), torch.bfloat16, True),
    ("rms_bf16_d192", (3, 11, 192), torch.bfloat16, False),
]
# (name, shape, split dim, dtype)
SWIGLU_CASES = [
    ("swiglu_fp32_last", (3, 7, 2 * 40), -1, torch.float32),
    ("swiglu_fp32_nchw", (2, 2 * 24, 3, 5), 1, torch.float32),
    ("swiglu_bf16_last", (5, 2 * 96), -1, torch.bfloat16),
    ("swiglu_bf16_nchw", (2, 2 * 16, 4, 3), 1, torch.bfloat16),
]
# (name, [B, N, H, D], dtype of o, dtype of loc and gate): loc is always the strided head view
GATE_CASES = [
    ("gate_fp32_d64", (2, 6, 3, 64), torch.float32, torch.float32),
    ("gate_fp32_d48", (1, 9, 2, 48), torch.float32, torch.float32),
    ("gate_bf16_d64", (2, 7, 3, 64), torch.bfloat16, torch.bfloat16),
    ("gate_mixed_d32", (1, 5, 2, 32), torch.float32, torch.bfloat16),
]
# (name, [B, N, H, D], dtype, with a bias): o and loc contiguous, gp a column slice of a wider per-token buffer
# (the merged inference projection's output, read in place through the kernel's token stride), and g_proj's
# bias [H * D] added in the kernel
GATE_SLICE_CASES = [("gate_slice_fp32_d64_bias", (2, 6, 3, 64), torch.float32, True),
                    ("gate_slice_bf16_d32_bias", (1, 7, 2, 32), torch.bfloat16, True),
                    ("gate_slice_fp32_d32", (1, 5, 2, 32), torch.float32, False)]
# (name, dtype, with extreme logits): the log-decay gate logsigmoid(x) / 16
LOGSIG_CASES = [("logsig_fp32", torch.float32, False), ("logsig_fp32_extreme", torch.float32, True),
                ("logsig_bf16", torch.bfloat16, False)]
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def _check(r, plain, keys, dtype, name):
    """Within the tolerance of the oracle; in fp32 also no worse than the plain path.

    The interpreter truncates fp32 -> bf16 stores (the GPU rounds to nearest), which doubles the
    bf16 error here, so the bf16 "no worse than plain" check lives in the CUDA tests instead.
    """
    for k in keys:
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"
        if dtype == torch.float32:
            assert r[k] <= 1.05 * plain[k] + 1e-7, f"{name}: {k} error {r[k]:.2e} worse than plain {plain[k]:.2e}"


def _rms_ref(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _gate_case(o, loc, gp, gen, bias=False):
    """The fused gate's output and five grads (six with a gate bias) against float64 (gp may be a view into a wider
    leaf)."""
    from vig.layers.fused.gate import gated_norm_blend_fused
    H, D = o.shape[-2:]
    wg, wl = (1 + 0.3 * torch.randn(2, D, generator=gen)).unbind(0)
    wg, wl = wg.clone().requires_grad_(), wl.clone().requires_grad_()
    ins = (o, loc, gp, wg, wl)
    if bias:
        ins += (torch.randn(H * D, generator=gen).requires_grad_(),)
    y = gated_norm_blend_fused(*ins[:5], 1e-6, gp_bias=ins[5] if bias else None)
    dy = torch.randn(y.shape, generator=gen).to(y.dtype)
    grads = torch.autograd.grad(y, ins, dy)
    ref_in = [t.detach().double().requires_grad_() for t in ins]
    logits = ref_in[2] + ref_in[5].view(H, D) if bias else ref_in[2]
    yr = torch.lerp(_rms_ref(ref_in[1], ref_in[4], 1e-6), _rms_ref(ref_in[0], ref_in[3], 1e-6),
                    torch.sigmoid(logits))
    ref_grads = torch.autograd.grad(yr, ref_in, dy.double())
    r = dict(y=_rel(y, yr), dtypes=[str(t.dtype) for t in (y, *grads)], shape=list(y.shape))
    r.update({f"d{i}": _rel(g, gr) for i, (g, gr) in enumerate(zip(grads, ref_grads))})
    return r


def run_cases():
    from vig.layers.fused.logsigmoid import log_gate_fused
    from vig.layers.fused.rmsnorm import rms_norm_fused
    from vig.layers.fused.gate import head_rows
    from vig.layers.fused.swiglu import swiglu_fused
    from vig.layers.norms import rms_norm_reference
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, shape, dtype, strided in NORM_CASES:
        if strided:  # [B, C, N] -> [B, N, H, D] view, last-dim stride N (the l_norm input)
            B, N, H, D = shape
            base = torch.randn(B, H * D, N, generator=gen).to(dtype)
            x = base.transpose(1, 2).unflatten(-1, (H, D)).detach().requires_grad_()
        else:
            x = torch.randn(shape, generator=gen).to(dtype).requires_grad_()
        w = (1 + 0.3 * torch.randn(shape[-1], generator=gen)).requires_grad_()
        dy = torch.randn(shape, generator=gen).to(dtype)
        y = rms_norm_fused(x, w, 1e-6)
        dx, dw = torch.autograd.grad(y, (x, w), dy)
        xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        yr = _rms_ref(xr, wr, 1e-6)
        dxr, dwr = torch.autograd.grad(yr, (xr, wr), dy.double())
        yp = rms_norm_reference(x, w, 1e-6)  # the plain path in the test dtype: the bar to meet
        dxp, dwp = torch.autograd.grad(yp, (x, w), dy)
        out[name + "_plain"] = dict(y=_rel(yp, yr), dx=_rel(dxp, dxr), dw=_rel(dwp, dwr))
        out[name] = dict(y=_rel(y, yr), dx=_rel(dx, dxr), dw=_rel(dw, dwr),
                         dtypes=[str(y.dtype), str(dx.dtype), str(dw.dtype)], shape=list(y.shape))
    for name, shape, dim, dtype in SWIGLU_CASES:
        h = torch.randn(shape, generator=gen).mul(2).to(dtype).requires_grad_()
        y = swiglu_fused(h, dim)
        dy = torch.randn(y.shape, generator=gen).to(dtype)
        (dh,) = torch.autograd.grad(y, (h,), dy)
        hr = h.detach().double().requires_grad_()
        a, b = hr.chunk(2, dim=dim)
        yr = F.silu(a) * b
        (dhr,) = torch.autograd.grad(yr, (hr,), dy.double())
        ap, bp = h.chunk(2, dim=dim)
        (dhp,) = torch.autograd.grad(F.silu(ap) * bp, (h,), dy)
        out[name + "_plain"] = dict(y=_rel(F.silu(ap) * bp, yr), dh=_rel(dhp, dhr))
        out[name] = dict(y=_rel(y, yr), dh=_rel(dh, dhr), dtypes=[str(y.dtype), str(dh.dtype)], shape=list(y.shape))
    for name, (B, N, H, D), dt_o, dt_l in GATE_CASES:
        o = torch.randn(B, N, H, D, generator=gen).to(dt_o).requires_grad_()
        base = torch.randn(B, H * D, N, generator=gen).to(dt_l)
        loc = base.transpose(1, 2).unflatten(-1, (H, D)).detach().requires_grad_()
        gp = torch.randn(B, N, H, D, generator=gen).mul(2).to(dt_l).requires_grad_()
        out[name] = _gate_case(o, loc, gp, gen)
    for name, (B, N, H, D), dtype, bias in GATE_SLICE_CASES:
        o, loc = (torch.randn(B, N, H, D, generator=gen).to(dtype).requires_grad_() for _ in range(2))
        wide = torch.randn(B, N, H * D + 40, generator=gen).mul(2).to(dtype).requires_grad_()
        gp = wide[..., 24:24 + H * D].unflatten(-1, (H, D))
        out[name] = _gate_case(o, loc, gp, gen, bias)
        out[name]["gp_in_place"] = int(head_rows(o, loc, gp)[2].data_ptr() == gp.data_ptr())
    for name, dtype, extreme in LOGSIG_CASES:
        x = torch.randn(3, 7, 40, generator=gen) * 4
        if extreme:  # decays within fp32 eps of 1 and of 0 must keep their relative precision
            x = torch.cat([x.flatten(), torch.tensor([30.0, 20.0, 17.0, 9.0, 0.0, -9.0, -30.0, -80.0] * 5)])
        x = x.to(dtype).requires_grad_()
        y = log_gate_fused(x, 16)
        dy = torch.randn(y.shape, generator=gen)
        (dx,) = torch.autograd.grad(y, (x,), dy)
        xr = x.detach().double().requires_grad_()
        yr = F.logsigmoid(xr) / 16
        (dxr,) = torch.autograd.grad(yr, (xr,), dy.double())
        elem = float(((y.detach().double() - yr.detach()).abs() / yr.detach().abs().clamp_min(1e-300)).max())
        out[name] = dict(y=_rel(y, yr), dx=_rel(dx, dxr), elem=elem, dtypes=[str(y.dtype), str(dx.dtype)])
    return out


@pytest.mark.parametrize("name,shape,dtype,strided", NORM_CASES)
def test_interpreted_rmsnorm_matches_oracle(interpreted, name, shape, dtype, strided):
    r = interpreted[name]
    assert r["shape"] == list(shape)
    assert r["dtypes"] == [str(dtype), str(dtype), "torch.float32"]
    _check(r, interpreted[name + "_plain"], ("y", "dx", "dw"), dtype, name)


@pytest.mark.parametrize("name,shape,dim,dtype", SWIGLU_CASES)
def test_interpreted_swiglu_matches_oracle(interpreted, name, shape, dim, dtype):
    r = interpreted[name]
    want = list(shape)
    want[dim] //= 2
    assert r["shape"] == want
    assert r["dtypes"] == [str(dtype), str(dtype)]
    _check(r, interpreted[name + "_plain"], ("y", "dh"), dtype, name)


@pytest.mark.parametrize("name,shape,dt_o,dt_l", GATE_CASES)
def test_interpreted_gate_matches_oracle(interpreted, name, shape, dt_o, dt_l):
    r = interpreted[name]
    assert r["shape"] == list(shape)
    want = torch.promote_types(dt_o, dt_l)
    assert r["dtypes"] == [str(want), str(dt_o), str(dt_l), str(dt_l), "torch.float32", "torch.float32"]
    tol = TOL[torch.bfloat16 if torch.bfloat16 in (dt_o, dt_l) else torch.float32]
    for k in ("y", "d0", "d1", "d2", "d3", "d4"):
        assert r[k] <= tol, f"{name}: {k} relative RMSE {r[k]:.2e} > {tol:.0e} ({r})"


@pytest.mark.parametrize("name,shape,dtype,bias", GATE_SLICE_CASES)
def test_interpreted_gate_reads_a_column_slice_in_place(interpreted, name, shape, dtype, bias):
    """gp read in place from a wider buffer; with g_proj's bias added in the kernel, the bias's gradient too."""
    r = interpreted[name]
    assert r["shape"] == list(shape) and r["gp_in_place"] == 1, r
    assert r["dtypes"] == [str(dtype)] * 4 + ["torch.float32"] * (3 if bias else 2)
    for k in ("y", "d0", "d1", "d2", "d3", "d4") + (("d5",) if bias else ()):
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"


@pytest.mark.parametrize("name,dtype,extreme", LOGSIG_CASES)
def test_interpreted_log_gate_matches_oracle(interpreted, name, dtype, extreme):
    r = interpreted[name]
    assert r["dtypes"] == ["torch.float32", str(dtype)]
    assert r["y"] <= 1e-6 and r["elem"] <= 1e-5, f"{name}: {r}"  # fp32 out: per element, even near 0
    assert r["dx"] <= TOL[dtype], f"{name}: {r}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run_cases()))
