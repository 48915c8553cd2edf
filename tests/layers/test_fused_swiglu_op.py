"""The fused SwiGLU as the custom op vig::swiglu (what torch.compile calls on CUDA).

CPU: the kernels run under TRITON_INTERPRET=1 in one child process (this file run as a script): the op's output
and input grad against float64, the op compiled with fullgraph against the op eager, torch.library.opcheck, and a
compiled SwiGLU MLP (ViG's: its graph holds the op; ViG-H's channel split: inductor's) against the plain path. CUDA: bf16 against
float64 at ViG-T's training shape.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from fused_checks import assert_compiled_matches_plain, assert_import_leaves_unloaded, compiled_against_plain
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")
# (name, shape of h, split dim, dtype)
CASES = [("fp32_last", (3, 7, 2 * 40), -1, torch.float32), ("bf16_nchw", (2, 2 * 16, 4, 3), 1, torch.bfloat16)]
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def _op_vs_float64(h, dim, dy_gen):
    from vig.layers.fused.swiglu_op import swiglu_op
    h = h.detach().requires_grad_()
    y = swiglu_op(h, dim)
    dy = torch.randn(y.shape, generator=dy_gen).to(y.device, y.dtype)
    (dh,) = torch.autograd.grad(y, h, dy)
    hr = h.detach().double().requires_grad_()
    a, b = hr.chunk(2, dim=dim)
    yr = F.silu(a) * b
    (dhr,) = torch.autograd.grad(yr, hr, dy.double())
    return (y, dh), {"y": _rel(y, yr), "dh": _rel(dh, dhr), "dtypes": [str(y.dtype), str(dh.dtype)]}


def run_cases():
    from vig.layers.fused.swiglu_op import swiglu_op
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, shape, dim, dtype in CASES:
        h = torch.randn(shape, generator=gen).mul(2).to(dtype)
        eager, errs = _op_vs_float64(h, dim, torch.Generator().manual_seed(1))
        torch._dynamo.reset()
        compiled_fn = torch.compile(lambda x: swiglu_op(x, dim), backend="aot_eager", fullgraph=True)
        hc = h.detach().requires_grad_()
        yc = compiled_fn(hc)
        dy = torch.randn(yc.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        (dhc,) = torch.autograd.grad(yc, hc, dy)
        errs.update(y_compiled_vs_eager=_rel(yc, eager[0]), dh_compiled_vs_eager=_rel(dhc, eager[1]))
        report = torch.library.opcheck(swiglu_op, (h.detach().requires_grad_(), dim))
        errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
        out[name] = errs
    out["mlp"] = _compiled_mlp(channel_first=False)
    out["mlp_channel_first"] = _compiled_mlp(channel_first=True)
    out["mlp_channel_first_opted_in"] = _compiled_mlp(channel_first=True, routes=("swiglu_op_channels",))
    return out


def _compiled_mlp(channel_first, routes=("swiglu_op",)):
    """ViG's SwiGLUMlp (channel_first: ViG-H's GatedMlp2d) compiled with the op's `routes` forced on for CPU
    tensors (the defaults' on CUDA, or an opt-in), against its plain eager path."""
    import vig.layers.mlp as mlp
    torch.manual_seed(0)
    module = mlp.GatedMlp2d(16, 32) if channel_first else mlp.SwiGLUMlp(16, 32)
    x = torch.randn(2, 16, 3, 4) if channel_first else torch.randn(2, 12, 16)

    return compiled_against_plain(mlp, module, x, routes, "vig.swiglu")


@pytest.mark.parametrize("name,dtype", [(c[0], c[3]) for c in CASES])
def test_interpreted_op_matches_float64_and_compiles(interpreted, name, dtype):
    r = interpreted[name]
    assert r["dtypes"] == [str(dtype), str(dtype)]
    for k in ("y", "dh"):
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"
        assert r[k + "_compiled_vs_eager"] <= 1e-6, f"{name}: compiled {k} differs from eager ({r})"
    assert r["opcheck"] == {}, r["opcheck"]


@pytest.mark.parametrize("mlp,op_used", [("mlp", 1), ("mlp_channel_first", 0), ("mlp_channel_first_opted_in", 1)])
def test_interpreted_compiled_mlp_matches_plain(interpreted, mlp, op_used):
    """ViG's channel-last split goes through the op; ViG-H's channel split stays with inductor unless opted in."""
    assert_compiled_matches_plain(interpreted[mlp], op_used, mlp)


def test_registering_the_op_loads_no_kernel():
    assert_import_leaves_unloaded(("vig.layers.fused.swiglu_op", "vig.layers.mlp"), "vig.layers.fused.swiglu")


def test_op_checks_its_arguments():
    from vig.layers.fused.swiglu_op import swiglu_op
    with pytest.raises(ValueError, match=r"^swiglu: size 7 of dim 1 is odd"):
        swiglu_op(torch.randn(2, 7), -1)
    with pytest.raises(ValueError, match=r"^swiglu: input must be contiguous"):
        swiglu_op(torch.randn(8, 4).t(), 1)


@cuda
def test_op_on_cuda_bf16_matches_float64():
    h = torch.randn(4 * 196, 2 * 512, generator=torch.Generator().manual_seed(2)).mul(2).to("cuda", torch.bfloat16)
    _, errs = _op_vs_float64(h, -1, torch.Generator().manual_seed(3))
    assert errs["y"] <= 5e-3 and errs["dh"] <= 5e-3, errs


if __name__ == "__main__":
    torch.set_num_threads(1)  # the child of one pytest-xdist worker: one core
    print(json.dumps(run_cases()))
