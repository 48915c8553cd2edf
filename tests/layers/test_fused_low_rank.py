"""gk_proj's second layer at inference as one kernel (layers/fused/low_rank.py, low_rank_op.py; on by
default since session 38, VIG_FUSED_OFF=gk_proj_op; bigla_attn.merged_projections).

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the kernel against float64 (fp32
<= 1e-5; bf16 / fp16 no worse than addmm in that dtype), on a column slice of a wider buffer as the merged projections
hand it over, at ViG-T's 192 outputs and at widths no block divides, ranks 16 and 32; an empty input; opcheck; a ViG-T
mixer at inference with the route forced, eager and compiled, against its addmm path.
CPU: the errors, the FLOP formula, the route. CUDA: ViG-T's and ViG-B's shapes in bf16 and fp32.
"""
import json

import pytest
import torch
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on CUDA only")
# (name, rows, rank, outputs, dtype, the buffer's width the rank's columns are sliced from)
CASES = [("fp32_vig_t", 150, 16, 192, torch.float32, 592), ("fp32_n72_rank32", 37, 32, 72, torch.float32, 32),
         ("bf16_vig_t", 300, 16, 192, torch.bfloat16, 592), ("fp16_vig_s", 70, 16, 384, torch.float16, 1216)]
TOL = 1e-5


def _inputs(m, r, n, dtype, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    buf = torch.randn(m, width, generator=gen).to(dtype)
    a = buf[:, width - r - (width > r) * 8: width - (width > r) * 8]  # a column slice, as the merged output's
    w = (torch.randn(n, r, generator=gen) / r ** 0.5).to(dtype)
    bias = torch.randn(n, generator=gen)
    return a, w, bias


def _mixer_case():
    """A ViG-T-width mixer at inference with the merged projections and the op forced on CPU tensors (bf16 autocast),
    eager and compiled (inductor), against its addmm path."""
    import vig.layers.bigla_attn as attn
    from torch._inductor.utils import run_and_get_code
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(192, 3, use_act_in_conv=True, use_out_act=True).eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 16, 192)
    real_merge, real_route = attn.merges_projections, attn.fused_op_enabled
    attn.merges_projections = lambda m, xs: True
    try:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            attn.fused_op_enabled = lambda t, name: False
            plain = mixer(x, (4, 4))
            attn.fused_op_enabled = lambda t, name: name == "gk_proj_op"
            eager = mixer(x, (4, 4))
            torch._dynamo.reset()
            compiled, codes = run_and_get_code(torch.compile(mixer, fullgraph=True), x, (4, 4))
    finally:
        attn.merges_projections, attn.fused_op_enabled = real_merge, real_route
    return {"eager": _rel(eager, plain), "compiled": _rel(compiled, plain),
            "op_in_code": int(any("vig.low_rank_linear" in c for c in codes))}


def run_cases():
    from vig.layers.fused.low_rank_op import low_rank_linear
    out = {}
    for name, m, r, n, dtype, width in CASES:
        a, w, bias = _inputs(m, r, n, dtype, width)
        got = low_rank_linear(a, w, bias)
        exact = a.double() @ w.double().t() + bias.double()
        out[name] = {"y": _rel(got, exact), "dtype": str(got.dtype), "shape": list(got.shape),
                     "contiguous": got.is_contiguous(), "a_strided": a.stride(0) != a.shape[1]}
        if dtype != torch.float32:
            out[name]["addmm"] = _rel(torch.addmm(bias.to(dtype), a, w.t()), exact)
        if name == "fp32_vig_t":  # inference only (no autograd registered): opcheck on inputs needing no gradient
            report = torch.library.opcheck(low_rank_linear, (a, w, bias))
            out[name]["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
    a, w, bias = _inputs(0, 16, 192, torch.float32, 16)
    out["empty"] = list(low_rank_linear(a, w, bias).shape)
    out["mixer"] = _mixer_case()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreted_kernel_matches_float64(interpreted, case):
    name, m, _, n, dtype, width = case
    r = interpreted[name]
    assert r["shape"] == [m, n] and r["dtype"] == str(dtype) and r["contiguous"], r
    assert r["a_strided"] == (width > case[2]), r
    if dtype == torch.float32:
        assert r["y"] <= TOL, r
    else:
        assert r["y"] <= 1.05 * r["addmm"] + 1e-7, r
    assert r.get("opcheck", {}) == {}, r["opcheck"]


def test_interpreted_empty_input(interpreted):
    assert interpreted["empty"] == [0, 192]


def test_interpreted_mixer_takes_the_op(interpreted):
    """The op's fp32 bias and unrounded sum differ from addmm's bf16 ones by bf16 rounding at most, carried through
    the op and the gate."""
    r = interpreted["mixer"]
    assert r["op_in_code"] == 1 and 0 < r["eager"] <= 1e-2 and r["compiled"] <= 2e-2, r


def test_errors_name_the_argument():
    from vig.layers.fused.low_rank_op import check_low_rank_args
    a, w, bias = _inputs(4, 16, 96, torch.bfloat16, 64)
    check_low_rank_args(a, w, bias)
    with pytest.raises(ValueError, match=r"the rank \(a's last dim\) must be one of \(16, 32, 64\), got 8"):
        check_low_rank_args(a[:, :8], w[:, :8], bias)
    with pytest.raises(ValueError, match=r"a must be \[rows, 16\] with unit column stride"):
        check_low_rank_args(a.unsqueeze(0), w, bias)
    with pytest.raises(ValueError, match="unit column stride"):
        check_low_rank_args(a.t().contiguous().t(), w, bias)
    with pytest.raises(ValueError, match=r"w must be a contiguous \[N, 16\] matrix"):
        check_low_rank_args(a, w.t().contiguous().t(), bias)
    with pytest.raises(ValueError, match=r"bias must be a contiguous \[96\] vector"):
        check_low_rank_args(a, w, bias[:90])
    with pytest.raises(ValueError, match="a and w must share a compute dtype"):
        check_low_rank_args(a, w.float(), bias)


def test_flop_counter_counts_the_gemm():
    from torch.utils.flop_counter import FlopCounterMode
    from vig.layers.fused.low_rank_op import low_rank_linear
    a, w, bias = _inputs(6, 16, 96, torch.float32, 16)
    with FlopCounterMode(display=False) as plain:
        torch.addmm(bias, a, w.t())
    with torch.device("meta"), FlopCounterMode(display=False) as fused:
        low_rank_linear(a.to("meta"), w.to("meta"), bias.to("meta"))
    assert fused.get_total_flops() == plain.get_total_flops() == 2 * 6 * 16 * 96


def test_route_is_on_by_default_in_half_precision(monkeypatch):
    """On by default (session 38: faster at ViG-T / S / B); VIG_FUSED_OFF=gk_proj_op turns it off; never in fp32
    (addmm keeps torch's TF32 settings)."""
    import vig.layers.bigla_attn as attn
    from vig.layers.fused import OPT_IN, fused_op_enabled
    assert "gk_proj_op" not in OPT_IN
    assert not fused_op_enabled(torch.empty(0), "gk_proj_op"), "the route must stay off CPU tensors"
    calls = []
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name: name == "gk_proj_op")
    import vig.layers.fused.low_rank_op as op
    monkeypatch.setattr(op, "low_rank_linear", lambda *a: calls.append(a[0].dtype) or torch.addmm(a[2], a[0], a[1].t()))
    mixer = attn.BiGLAttention(64, 2).eval()
    xs = torch.randn(1, 4, 64)
    with torch.no_grad():
        attn.merged_projections(mixer, xs)
        attn.merged_projections(mixer.half(), xs.half())
    assert calls == [torch.float16], calls


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n,width", [(192, 592), (768, 2368)])  # ViG-T's and ViG-B's gates, from their merged stacks
def test_cuda_kernel_matches_float64(dtype, n, width):
    from vig.layers.fused.low_rank_op import low_rank_linear
    a, w, bias = (t.cuda() for t in _inputs(4 * 196 + 3, 16, n, dtype, width))
    exact = a.double() @ w.double().t() + bias.double()
    got = _rel(low_rank_linear(a, w, bias), exact)
    bar = TOL if dtype == torch.float32 else 1.05 * _rel(torch.addmm(bias.to(dtype), a, w.t()), exact) + 1e-7
    assert got <= bar, (got, bar)


@cuda
def test_cuda_vig_tiny_inference_takes_the_op(monkeypatch):
    """ViG-T under bf16 autocast: the op in every block by default, none with VIG_FUSED_OFF=gk_proj_op, and the
    logits within bf16 rounding of addmm's (the op adds the bias in fp32): the outputs within 1e-2 of each other."""
    import timm
    import vig  # noqa: F401  (registers the models)
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=64, num_classes=10).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    outs = {}
    for off in ("gk_proj_op", ""):
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16), torch.profiler.profile() as prof:
            outs[off] = model(x).float()
        outs[off + "_calls"] = sum(e.name == "vig::low_rank_linear" for e in prof.events())
    assert outs["gk_proj_op_calls"] == 0 and outs["_calls"] == len(model.blocks), outs
    assert _rel(outs[""], outs["gk_proj_op"]) <= 1e-2


if __name__ == "__main__":
    print(json.dumps(run_cases()))
