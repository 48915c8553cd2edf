"""A block's last projection + residual add + RMSNorm as one kernel at inference (layers/fused/linear_add_norm.py,
linear_add_norm_op.py, blocks.DeferredLinear).

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the kernel against float64 (fp32 <= 1e-5;
bf16 / fp16 no worse than the plain path, whose GEMM output is rounded before the add), at ViG-T's o_proj (K 192) and
down_proj (K 256) into 192 outputs, a width that is no power of two (96), a row count no block divides, strided
rows, a bf16 stream; an empty batch; opcheck.
CPU: the op's PyTorch path against float64 (also under a caller's autocast), the errors, the FLOP formula; the blocks'
wiring with the route forced: ViG-T under bf16 autocast no worse than plain against float64, 2 x 12 - 1 op calls (the
last projection meets the final norm, whose output is not rounded: it runs plain), a compiled model with the op in its
code, and the rule.
"""
import json

import pytest
import torch
import torch.nn.functional as F

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on CUDA only")
# (name, M, K, N, compute dtype, stream dtype, a's row stride or None)
CASES = [("fp32_o_proj", 70, 192, 192, torch.float32, torch.float32, None),
         ("fp32_down_proj_strided", 33, 256, 192, torch.float32, torch.float32, 300),
         ("fp32_n96", 65, 64, 96, torch.float32, torch.float32, None),
         ("bf16_o_proj", 130, 192, 192, torch.bfloat16, torch.float32, None),
         ("fp16_down_proj", 64, 256, 192, torch.float16, torch.float32, None),
         ("bf16_stream_bf16", 40, 192, 192, torch.bfloat16, torch.bfloat16, None)]
TOL = 1e-5


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _inputs(m, k, n, dtype, x_dtype, row_stride=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(m, row_stride or k, generator=gen)[:, :k].to(dtype)
    w = (torch.randn(n, k, generator=gen) / k ** 0.5).to(dtype)
    x = torch.randn(m, n, generator=gen).to(x_dtype)
    norm_w = 1 + 0.3 * torch.randn(n, generator=gen)
    return a, w, x, norm_w


def _oracle(a, w, x, norm_w, eps=1e-6):
    s = x.double() + a.double() @ w.double().t()
    return s, s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps) * norm_w.double()


def _plain(a, w, x, norm_w, eps=1e-6):
    """The plain path's numerics: the GEMM's output rounded to the compute dtype, added to the stream, normed in fp32."""
    s = (x.float() + F.linear(a.float(), w.float()).to(a.dtype).float()).to(x.dtype)
    sf = s.float()
    return s, (sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + eps) * norm_w).to(a.dtype)


def _errors(got, a, w, x, norm_w):
    ref = _oracle(a, w, x, norm_w)
    r = {"s": _rel(got[0], ref[0]), "n": _rel(got[1], ref[1]), "dtypes": [str(t.dtype) for t in got],
         "contiguous": all(t.is_contiguous() for t in got)}
    if a.dtype != torch.float32:
        plain = _plain(a, w, x, norm_w)
        r["plain_s"], r["plain_n"] = _rel(plain[0], ref[0]), _rel(plain[1], ref[1])
    return r


def run_cases():
    from vig.layers.fused.linear_add_norm_op import linear_add_rms_norm
    out = {}
    for name, m, k, n, dtype, x_dtype, stride in CASES:
        a, w, x, norm_w = _inputs(m, k, n, dtype, x_dtype, stride)
        out[name] = _errors(linear_add_rms_norm(a, w, x, norm_w, 1e-6), a, w, x, norm_w)
        if name == "fp32_o_proj":  # inference only (no autograd registered): opcheck on inputs needing no gradient
            report = torch.library.opcheck(linear_add_rms_norm, (a, w, x, norm_w, 1e-6))
            out[name]["opcheck"] = {key: v for key, v in report.items() if v != "SUCCESS"}
    a, w, x, norm_w = _inputs(0, 192, 192, torch.float32, torch.float32)
    out["empty"] = [list(t.shape) for t in linear_add_rms_norm(a.view(0, 0, 192), w, x.view(0, 0, 192), norm_w, 1e-6)]
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreted_kernel_matches_float64(interpreted, case):
    name, dtype, x_dtype = case[0], case[4], case[5]
    r = interpreted[name]
    assert r["dtypes"] == [str(x_dtype), str(dtype)] and r["contiguous"], r
    if dtype == torch.float32:
        assert r["s"] <= TOL and r["n"] <= TOL, r
    else:
        assert r["s"] <= 1.05 * r["plain_s"] + 1e-7 and r["n"] <= 1.05 * r["plain_n"] + 1e-7, r
    assert r.get("opcheck", {}) == {}, r["opcheck"]


def test_interpreted_empty_batch(interpreted):
    assert interpreted["empty"] == [[0, 0, 192], [0, 0, 192]]


@pytest.mark.parametrize("autocast", [False, True])
def test_torch_path_matches_float64(autocast):
    """The op on CPU tensors outside the interpreter (the PyTorch path): fp32 <= 1e-5, also under a caller's bf16
    autocast, which must not round its fp32 product."""
    from vig.layers.fused.linear_add_norm_op import linear_add_rms_norm
    a, w, x, norm_w = _inputs(50, 192, 192, torch.float32, torch.float32)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        got = linear_add_rms_norm(a, w, x, norm_w, 1e-6)
    r = _errors(got, a, w, x, norm_w)
    assert r["s"] <= TOL and r["n"] <= TOL, r


def test_errors_name_the_argument():
    from vig.layers.fused.linear_add_norm_op import check_linear_add_norm_args
    a, w, x, norm_w = _inputs(4, 64, 96, torch.bfloat16, torch.float32)
    check_linear_add_norm_args(a, w, x, norm_w)
    with pytest.raises(ValueError, match=r"w must be \[N, K\] with unit column stride and K = a's last dim 64"):
        check_linear_add_norm_args(a, w[:, :32], x, norm_w)
    with pytest.raises(ValueError, match="unit column stride"):
        check_linear_add_norm_args(a, w.t().contiguous().t(), x, norm_w)
    with pytest.raises(ValueError, match=r"output width must be 1..256"):
        check_linear_add_norm_args(a, torch.zeros(384, 64, dtype=a.dtype), torch.zeros(4, 384), torch.ones(384))
    with pytest.raises(ValueError, match=r"x must be a's rows by w's 96 outputs, \[4, 96\], got \[4, 95\]"):
        check_linear_add_norm_args(a, w, x[:, :95], norm_w)
    with pytest.raises(ValueError, match=r"norm_w must be a contiguous \[96\] vector"):
        check_linear_add_norm_args(a, w, x, norm_w[:90])
    with pytest.raises(ValueError, match="a and w must share a compute dtype"):
        check_linear_add_norm_args(a, w.half(), x, norm_w)
    with pytest.raises(ValueError, match="must be floating point"):
        check_linear_add_norm_args(a, w, x.long(), norm_w)


def test_flop_counter_counts_the_gemm():
    from torch.utils.flop_counter import FlopCounterMode
    from vig.layers.fused.linear_add_norm_op import linear_add_rms_norm
    a, w, x, norm_w = _inputs(6, 64, 96, torch.float32, torch.float32)
    with FlopCounterMode(display=False) as plain:
        F.linear(a.view(2, 3, 64), w)
    with FlopCounterMode(display=False) as fused:
        linear_add_rms_norm(a.view(2, 3, 64), w, x.view(2, 3, 96), norm_w, 1e-6)
    assert fused.get_total_flops() == plain.get_total_flops() == 2 * 6 * 64 * 96


def _vig_tiny():
    import timm
    import vig  # noqa: F401  (registers the models)
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=64, num_classes=10).eval()
    with torch.no_grad():  # o_proj and down_proj start near zero: give every branch weight
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture
def forced(monkeypatch):
    """The route on for CPU tensors (it needs CUDA); the op takes its PyTorch path there. Counts the op's calls."""
    import vig.layers.blocks as blocks
    import vig.layers.fused.linear_add_norm_op as op
    calls = []
    real = op.linear_add_rms_norm_reference
    monkeypatch.setattr(blocks, "fused_op_enabled", lambda t, name: name == "linear_add_norm")
    monkeypatch.setattr(op, "linear_add_rms_norm_reference", lambda *a: calls.append(1) or real(*a))
    return calls


def test_vig_tiny_inference_no_worse_than_plain(forced, monkeypatch):
    import vig.layers.blocks as blocks
    model = _vig_tiny()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.double()(x.double())
        model.float()
        with torch.autocast("cpu", torch.bfloat16):
            fused = model(x)
            n_calls = len(forced)
            monkeypatch.setattr(blocks, "fused_op_enabled", lambda t, name: False)
            plain = model(x)
    assert n_calls == 2 * len(model.blocks) - 1, n_calls
    e_f, e_p = _rel(fused, ref), _rel(plain, ref)
    assert e_f != e_p and e_f <= 1.1 * e_p + 1e-4, (e_f, e_p)


def test_compiled_vig_tiny_calls_the_op(forced):
    from torch._inductor.utils import run_and_get_code
    model = _vig_tiny()
    x = torch.randn(1, 3, 32, 32)
    torch._dynamo.reset()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        eager = model(x)
        compiled, codes = run_and_get_code(torch.compile(model, fullgraph=True), x)
    assert any("vig.linear_add_rms_norm" in c for c in codes)
    assert _rel(compiled, eager) <= 2e-2  # inductor computes the plain layers' bf16 ops in fp32 between roundings


def test_rule(monkeypatch):
    import vig.layers.blocks as blocks
    block = _vig_tiny().blocks[0]
    h = torch.randn(1, 16, 192)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert not block.defers_projections(h)  # CPU: the route needs CUDA
    monkeypatch.setattr(blocks, "fused_op_enabled", lambda t, name: name == "linear_add_norm")
    with torch.no_grad():
        assert not block.defers_projections(h)  # fp32 compute: cuBLAS
        assert block.defers_projections(h.half())
        with torch.autocast("cpu", torch.bfloat16):
            assert block.defers_projections(h)
            assert not block.defers_projections(torch.randn(1, 16, 384))  # wider than one program's rows
    with torch.autocast("cpu", torch.bfloat16):
        assert not block.defers_projections(h)  # gradients on: training keeps the layers


def test_deferred_linear_meets_a_plain_consumer():
    """A DeferredLinear handed to a norm that is not an RMSNorm, or whose output is not rounded (the final norm), or
    to a plain add (a block run through __call__) runs as F.linear first."""
    from vig.layers.blocks import DeferredLinear, add_norm, materialize
    from vig.layers.norms import RMSNorm
    a, w, x, norm_w = _inputs(5, 64, 96, torch.float32, torch.float32)
    y = DeferredLinear(a, w)
    torch.testing.assert_close(materialize(y), F.linear(a, w))
    norm = RMSNorm(96)
    for got, want in ((add_norm(x, y, norm), add_norm(x, F.linear(a, w), norm)),
                      (add_norm(x, y, torch.nn.LayerNorm(96), autocast_out=True),
                       (x + F.linear(a, w), F.layer_norm(x + F.linear(a, w), (96,))))):
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("k", [192, 256])  # ViG-T's o_proj and down_proj
def test_cuda_kernel_matches_float64(dtype, k):
    """At ViG-T's widths over 4 images' rows plus 3: fp32 <= 1e-5 (IEEE dots), bf16 / fp16 no worse than the plain path."""
    from vig.layers.fused.linear_add_norm_op import linear_add_rms_norm
    a, w, x, norm_w = (t.cuda() for t in _inputs(4 * 196 + 3, k, 192, dtype, torch.float32))
    r = _errors(linear_add_rms_norm(a, w, x, norm_w, 1e-6), a, w, x, norm_w)
    if dtype == torch.float32:
        assert r["s"] <= TOL and r["n"] <= TOL, r
    else:
        assert r["s"] <= 1.05 * r["plain_s"] + 1e-7 and r["n"] <= 1.05 * r["plain_n"] + 1e-7, r


if __name__ == "__main__":
    print(json.dumps(run_cases()))
