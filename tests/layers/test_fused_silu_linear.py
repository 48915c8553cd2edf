"""silu(x) W^T as one kernel (layers/fused/silu_linear.py, silu_linear_op.py) and the route that leaves ViG-T's conv
SiLU to its consumers at inference (bigla_attn.defers_conv_act; opt-in VIG_FUSED_ON=silu_prologue).

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the op against float64 with the SiLU
rounded to x's dtype as the separate pass stores it, at shapes that leave partial row, column and K tiles (fp16: the
interpreter truncates fp32 -> bf16 conversions where the GPU rounds to nearest), the torch fallback in fp32, an empty
input, opcheck; a ViG-T-width mixer at inference with the route forced (bf16 autocast), eager and compiled with
fullgraph, against its default path. CPU: the errors, the FLOP formula, the route's default. CUDA: ViG-T's merged
shape in bf16; ViG-T's inference with the route on against off.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on CUDA only")
# name: (M, K, N, dtype): partial tiles of the interpreter launch (32 x 32, BK 16) on every axis; fp32 takes torch
CASES = {"fp16_partial": (70, 48, 40, torch.float16), "fp16_partial_k80": (33, 80, 72, torch.float16),
         "fp32_fallback": (20, 24, 16, torch.float32)}
TOL = {torch.float16: 5e-3, torch.float32: 1e-5}


def _inputs(M, K, N, dtype, device="cpu"):
    gen = torch.Generator().manual_seed(M)
    x = (1.5 * torch.randn(M, K, generator=gen)).to(device, dtype)
    w = (torch.randn(N, K, generator=gen) / K ** 0.5).to(device, dtype)
    return x, w


def _exact(x, w):
    """The default path's math: the SiLU rounded to x's dtype (the pass stores it so), the GEMM in float64."""
    return F.silu(x.double()).to(x.dtype).double() @ w.double().t()


def _mixer_case():
    """A ViG-T-width mixer at inference, merged projections forced, bf16 autocast on CPU tensors: the route on
    (conv without its SiLU, vig::silu_linear, the gate op's loc_silu when compiled) against the route off."""
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
            attn.fused_op_enabled = lambda t, name: name == "gate_op"
            plain = mixer(x, (4, 4))
            attn.fused_op_enabled = lambda t, name: name in ("silu_prologue", "gate_op")
            eager = mixer(x, (4, 4))
            torch._dynamo.reset()
            compiled, codes = run_and_get_code(torch.compile(mixer, fullgraph=True), x, (4, 4))
    finally:
        attn.merges_projections, attn.fused_op_enabled = real_merge, real_route
    return {"eager": _rel(eager, plain), "compiled": _rel(compiled, plain),
            "op_in_code": int(any("vig.silu_linear" in c for c in codes)),
            "gate_op_in_code": int(any("vig.gated_norm_blend" in c for c in codes))}


def run_cases():
    from vig.layers.fused.silu_linear_op import silu_linear
    out = {}
    for name, (M, K, N, dtype) in CASES.items():
        x, w = _inputs(M, K, N, dtype)
        got = silu_linear(x, w)
        out[name] = {"y": _rel(got, _exact(x, w)), "shape": list(got.shape), "dtype": str(got.dtype),
                     "without_silu": _rel(got, x.double() @ w.double().t())}
        if name == "fp16_partial":  # inference only (no autograd registered): opcheck on inputs needing no gradient
            report = torch.library.opcheck(silu_linear, (x, w))
            out[name]["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
    out["empty"] = list(silu_linear(*_inputs(0, 48, 40, torch.float16)).shape)
    out["mixer"] = _mixer_case()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_interpreted_op_matches_float64(interpreted, name):
    M, _, N, dtype = CASES[name]
    r = interpreted[name]
    assert r["shape"] == [M, N] and r["dtype"] == str(dtype), r
    assert r["y"] <= TOL[dtype], r
    assert r["without_silu"] > 0.1, r  # the SiLU is applied: without it the result is far off
    assert r.get("opcheck", {}) == {}, r["opcheck"]


def test_interpreted_empty_input(interpreted):
    assert interpreted["empty"] == [0, 40]


def test_interpreted_mixer_takes_the_route(interpreted):
    """The same bf16 values up to the GEMM's and the gate's rounding order: eager (the plain gate on CPU, which
    takes F.silu of loc) and compiled (the gate op's loc_silu) within 1e-2 of the default path."""
    r = interpreted["mixer"]
    assert r["op_in_code"] == 1 and r["gate_op_in_code"] == 1, r
    assert r["eager"] <= 1e-2 and r["compiled"] <= 1e-2, r


def test_errors_name_the_argument():
    from vig.layers.fused.silu_linear_op import check_silu_linear_args
    x, w = _inputs(6, 32, 16, torch.bfloat16)
    check_silu_linear_args(x, w)
    with pytest.raises(ValueError, match=r"x must be \[rows, K\] with unit column stride"):
        check_silu_linear_args(x.unsqueeze(0), w)
    with pytest.raises(ValueError, match="unit column stride"):
        check_silu_linear_args(x.t().contiguous().t(), w)
    with pytest.raises(ValueError, match=r"w must be a contiguous \[N, 32\] matrix"):
        check_silu_linear_args(x, w[:, :16])
    with pytest.raises(ValueError, match=r"w must be a contiguous \[N, 32\] matrix"):
        check_silu_linear_args(x, w.t().contiguous().t())
    with pytest.raises(ValueError, match="x and w must share a compute dtype"):
        check_silu_linear_args(x, w.float())


def test_flop_counter_counts_the_gemm():
    from torch.utils.flop_counter import FlopCounterMode
    from vig.layers.fused.silu_linear_op import silu_linear
    x, w = _inputs(6, 32, 16, torch.float32)
    with FlopCounterMode(display=False) as plain:
        torch.mm(F.silu(x), w.t())
    with torch.device("meta"), FlopCounterMode(display=False) as fused:
        silu_linear(x.to("meta"), w.to("meta"))
    assert fused.get_total_flops() == plain.get_total_flops() == 2 * 6 * 32 * 16


def test_route_is_opt_in_and_needs_the_conv_silu(monkeypatch):
    """Off by default (untimed in a model); on with VIG_FUSED_ON=silu_prologue where the projections merge and the
    conv has a SiLU (ViG-T), never where it has none (ViG-S / B) or with gradients."""
    import vig.layers.bigla_attn as attn
    from vig.layers.fused import OPT_IN
    assert "silu_prologue" in OPT_IN
    x = torch.empty(1, 4, 64)
    with_act = attn.BiGLAttention(64, 2, use_act_in_conv=True).eval()
    without_act = attn.BiGLAttention(64, 2).eval()
    monkeypatch.setattr(attn, "merges_projections", lambda m, xs: not torch.is_grad_enabled())
    assert not attn.defers_conv_act(with_act, x), "opt-in: off without VIG_FUSED_ON (and off CPU tensors)"
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name: name == "silu_prologue")
    with torch.no_grad():
        assert attn.defers_conv_act(with_act, x) and not attn.defers_conv_act(without_act, x)
    assert not attn.defers_conv_act(with_act, x), "training keeps the conv's SiLU module"


@cuda
def test_cuda_kernel_matches_float64_at_vig_tiny():
    from vig.layers.fused.silu_linear_op import silu_linear
    x, w = _inputs(4 * 196 + 3, 192, 592, torch.bfloat16, "cuda")
    exact = _exact(x, w)
    got = _rel(silu_linear(x, w), exact)
    assert got <= 1.05 * _rel(torch.mm(F.silu(x), w.t()), exact) + 1e-7, got


@cuda
def test_cuda_vig_tiny_inference_takes_the_route(monkeypatch):
    """ViG-T under bf16 autocast with VIG_FUSED_ON=silu_prologue: the op in every block, none by default; the
    logits within bf16 rounding of the default's."""
    import timm
    import vig  # noqa: F401  (registers the models)
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=64, num_classes=10).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    outs = {}
    for on in ("silu_prologue", ""):
        monkeypatch.setenv("VIG_FUSED_ON", on)
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16), torch.profiler.profile() as prof:
            outs[on] = model(x).float()
        outs[on + "_calls"] = sum(e.name == "vig::silu_linear" for e in prof.events())
    assert outs["_calls"] == 0 and outs["silu_prologue_calls"] == len(model.blocks), outs
    assert _rel(outs["silu_prologue"], outs[""]) <= 1e-2


if __name__ == "__main__":
    print(json.dumps(run_cases()))
