"""gk_proj's two layers in training as vig::low_rank_gate (layers/fused/low_rank_gate.py, low_rank_gate_op.py; on by
default at ViG-T's width since session 45, VIG_FUSED_OFF=gk_proj_train; bigla_attn.gate_projection).

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the output and all four gradients against
float64 (fp32 <= 1e-5; bf16 <= 5e-3 and no worse than 1.5x the module path in bf16), at widths no tile divides, ranks
16 and 32, on a column slice of a wider buffer; no rows; opcheck; a ViG-T-width mixer's training step under bf16
autocast with the route forced, eager and compiled, against the module path.
CPU: the errors, the FLOP formulas, the route (ViG-S's and ViG-B's widths keep the module path), the unspecialised
tile count. CUDA: ViG-T's and ViG-S's widths in bf16 and fp32 at one tile a program and at several, and ViG-T's
compiled training step.
"""
import json

import pytest
import torch
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels run on CUDA only")
# (name, rows, channels, rank, outputs, dtype, the width of the buffer x's columns are sliced from)
# bf16_vig_t: 5 tiles of 64 rows over the interpreter's 4 programs each way, so programs walk several tiles
CASES = [("fp32_c48", 37, 48, 16, 48, torch.float32, 48), ("fp32_r32_n40_sliced", 29, 96, 32, 40, torch.float32, 130),
         ("bf16_vig_t", 300, 192, 16, 192, torch.bfloat16, 192), ("fp16_sliced", 45, 80, 16, 80, torch.float16, 100)]
NAMES = ("y", "dx", "dw0", "dw1", "db")
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3, torch.float16: 5e-3}


def _inputs(m, c, r, n, dtype, width, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, width, generator=gen).to(dtype)[:, width - c:]
    w0 = torch.randn(r, c, generator=gen) / c ** 0.5
    w1 = torch.randn(n, r, generator=gen) / r ** 0.5
    bias = torch.randn(n, generator=gen)
    dy = torch.randn(m, n, generator=gen).to(dtype)
    return [t.to(device) for t in (x, w0, w1, bias, dy)]


def _grads(fn, x, w0, w1, bias, dy):
    leaves = [t.detach().requires_grad_() for t in (x, w0, w1, bias)]
    y = fn(*leaves)
    return [y] + list(torch.autograd.grad(y, leaves, dy.to(y.dtype)))


def _module_path(x, w0, w1, bias):
    """nn.Linear's math in x's dtype, as autocast runs gk_proj: weights and the low-rank rows rounded to it."""
    dt = x.dtype
    return torch.nn.functional.linear(torch.nn.functional.linear(x, w0.to(dt)), w1.to(dt), bias.to(dt))


def _errors(got, exact):
    return {k: _rel(g, e) for k, g, e in zip(NAMES, got, exact)}


def compare(case, device="cpu"):
    from vig.layers.fused.low_rank_gate_op import low_rank_gate
    name, m, c, r, n, dtype, width = case
    x, w0, w1, bias, dy = _inputs(m, c, r, n, dtype, width, device=device)
    exact = _grads(_module_path, x.double(), w0.double(), w1.double(), bias.double(), dy.double())
    got = _grads(low_rank_gate, x, w0, w1, bias, dy)
    out = {"op": _errors(got, exact), "dtypes": [str(t.dtype) for t in got], "y_contiguous": got[0].is_contiguous(),
           "x_sliced": x.stride(0) != c}
    if dtype != torch.float32:
        out["module"] = _errors(_grads(_module_path, x, w0, w1, bias, dy), exact)
    return out


def _mixer_case():
    """A ViG-T-width mixer's training step under bf16 autocast on CPU tensors with the route forced, eager and
    compiled (inductor), against the module path: the output and every parameter's gradient."""
    import vig.layers.bigla_attn as attn
    from torch._inductor.utils import run_and_get_code
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(192, 3, use_act_in_conv=True, use_out_act=True)
    x = torch.randn(2, 16, 192)

    def step(fn):
        mixer.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            y = fn(x, (4, 4))
        y.float().square().mean().backward()
        return [y.detach()] + [p.grad.clone() for p in mixer.parameters() if p.grad is not None]

    real_route = attn.fused_op_enabled
    try:
        attn.fused_op_enabled = lambda t, name: False
        plain = step(mixer)
        attn.fused_op_enabled = lambda t, name: name == "gk_proj_train"
        eager = step(mixer)
        torch._dynamo.reset()
        compiled_mixer = torch.compile(mixer, fullgraph=True)
        compiled, codes = run_and_get_code(lambda: step(compiled_mixer))
    finally:
        attn.fused_op_enabled = real_route
    return {"eager": max(_rel(a, b) for a, b in zip(eager, plain)),
            "compiled": max(_rel(a, b) for a, b in zip(compiled, plain)), "grads": len(plain) - 1,
            "op_in_code": int(any("vig.low_rank_gate_bwd" in c for c in codes))}


def run_cases():
    from vig.layers.fused.low_rank_gate_op import low_rank_gate
    out = {case[0]: compare(case) for case in CASES}
    x, w0, w1, bias, dy = _inputs(0, 48, 16, 40, torch.float32, 48)
    y, dx, dw0, dw1, db = _grads(low_rank_gate, x, w0, w1, bias, dy)
    out["empty"] = {"shapes": [list(t.shape) for t in (y, dx)],
                    "zero_grads": int(all(not t.any() for t in (dw0, dw1, db)))}
    x, w0, w1, bias, _ = _inputs(9, 48, 16, 40, torch.float32, 64)
    report = torch.library.opcheck(low_rank_gate, tuple(t.requires_grad_() for t in (x, w0, w1, bias)))
    out["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
    out["mixer"] = _mixer_case()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreted_kernels_match_float64(interpreted, case):
    name, _, _, _, _, dtype, width = case
    r = interpreted[name]
    assert r["dtypes"] == [str(dtype)] * 2 + ["torch.float32"] * 3 and r["y_contiguous"], r
    assert r["x_sliced"] == (width > case[2]), r
    for k in NAMES:
        assert r["op"][k] <= TOL[dtype], (k, r)
        if dtype != torch.float32:  # the op's weight sums stay fp32 where the module's round to the dtype
            assert r["op"][k] <= 1.5 * r["module"][k] + 1e-6, (k, r)


def test_interpreted_no_rows(interpreted):
    assert interpreted["empty"] == {"shapes": [[0, 40], [0, 48]], "zero_grads": 1}


def test_interpreted_opcheck(interpreted):
    assert interpreted["opcheck"] == {}


def test_interpreted_mixer_training_step_takes_the_op(interpreted):
    """Against the module path under the same autocast: the op's fp32 weight sums and bias differ by bf16 rounding,
    carried through the op and the gate."""
    r = interpreted["mixer"]
    assert r["op_in_code"] == 1 and r["grads"] >= 10, r
    assert 0 < r["eager"] <= 2e-2 and r["compiled"] <= 2e-2, r


def test_errors_name_the_argument():
    from vig.layers.fused.low_rank_gate_op import check_low_rank_gate_args as check
    x, w0, w1, bias, _ = _inputs(4, 64, 16, 96, torch.bfloat16, 80)
    check(x, w0, w1, bias)
    with pytest.raises(ValueError, match=r"the rank \(w0's rows\) must be one of \(16, 32, 64\), got shape \(8, 64\)"):
        check(x, w0[:8], w1[:, :8], bias)
    with pytest.raises(ValueError, match=r"x must be \[rows, channels\] with unit column stride"):
        check(x.t().contiguous().t(), w0, w1, bias)
    with pytest.raises(ValueError, match=r"w0 must be a contiguous \[16, 64\] matrix"):
        check(x, w0[:, :32], w1, bias)
    with pytest.raises(ValueError, match=r"w1 must be a contiguous \[N, 16\] matrix"):
        check(x, w0, w1.t().contiguous().t(), bias)
    with pytest.raises(ValueError, match=r"bias must be a contiguous \[96\] vector"):
        check(x, w0, w1, bias[:90])
    with pytest.raises(ValueError, match="channels 768 and outputs 96 must be at most 512"):
        check(torch.zeros(2, 768), torch.zeros(16, 768), w1, bias)
    with pytest.raises(ValueError, match="x must be bf16, fp16 or fp32"):
        check(x.double(), w0, w1, bias)


def test_flop_counter_counts_both_directions():
    from torch.utils.flop_counter import FlopCounterMode
    import vig.layers.fused.low_rank_gate_op  # noqa: F401  (registers the formulas)
    m, c, r, n = 6, 48, 16, 40
    x, w0, w1, bias, dy = (t.to("meta") for t in _inputs(m, c, r, n, torch.float32, c))
    with torch.device("meta"), FlopCounterMode(display=False) as fwd:
        torch.ops.vig.low_rank_gate(x, w0, w1, bias)
    with torch.device("meta"), FlopCounterMode(display=False) as bwd:
        torch.ops.vig.low_rank_gate_bwd(dy, x, w0, w1)
    assert fwd.get_total_flops() == 2 * m * r * (c + n)
    assert bwd.get_total_flops() == 2 * m * r * (3 * c + 2 * n)


def test_route_is_on_by_default_at_vig_t_width_only(monkeypatch):
    """On by default (session 45: faster at ViG-T's width, slower at ViG-S's); never on CPU tensors; with the route
    taken, the mixer's gates come from the op in the autocast dtype; ViG-S's and ViG-B's widths keep the module path."""
    import vig.layers.bigla_attn as attn
    from vig.layers.fused import OPT_IN, fused_op_enabled
    assert "gk_proj_train" not in OPT_IN
    assert not fused_op_enabled(torch.empty(0), "gk_proj_train"), "the route must stay off CPU tensors"
    calls = []
    import vig.layers.fused.low_rank_gate_op as op
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name: name == "gk_proj_train")
    monkeypatch.setattr(op, "low_rank_gate", lambda x, *w: calls.append(x.dtype) or _module_path(x, *w))
    mixer = attn.BiGLAttention(64, 2)
    xs = torch.randn(1, 4, 64)
    with torch.autocast("cpu", torch.bfloat16):
        gates = attn.gate_projection(mixer, xs)
    assert calls == [torch.bfloat16] and gates.shape == (1, 4, 64) and gates.dtype == torch.bfloat16
    for dim, heads in ((384, 6), (768, 12)):  # ViG-S's and ViG-B's widths: the module path
        with torch.autocast("cpu", torch.bfloat16):
            attn.gate_projection(attn.BiGLAttention(dim, heads), torch.randn(1, 4, dim))
    assert calls == [torch.bfloat16]


def test_tile_count_is_not_specialised():
    """Triton turns an int argument equal to 1 into a constant. With one tile a program (up to 8,448 rows at the
    default launch) the backward compiled that way read shared memory out of bounds in a dot on an H100 (triton 3.6,
    compute-sanitizer, session 48: the GPU tests at 787 rows and ViG-T's training step at 64² faulted), while the
    runtime count, the form timed at 50,176 rows, passed at 50,176, 787 and 128 rows."""
    from vig.layers.fused import low_rank_gate as mod
    for kernel in (mod.low_rank_gate_fwd_kernel, mod.low_rank_gate_bwd_kernel):
        assert "TILES" in kernel.do_not_specialize, kernel


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("c", [192, 384])  # ViG-T's and ViG-S's widths
@pytest.mark.parametrize("rows", [4 * 196 + 3, 256 * 196 + 3])  # one tile a program; several (ViG-T 224, bs 256)
def test_cuda_kernels_match_float64(dtype, c, rows):
    r = compare(("cuda", rows, c, 16, c, dtype, c), device="cuda")
    for k in NAMES:
        assert r["op"][k] <= TOL[dtype], (k, r)
        if dtype != torch.float32:
            assert r["op"][k] <= 1.5 * r["module"][k] + 1e-6, (k, r)


@cuda
def test_cuda_vig_tiny_training_step_takes_the_op(monkeypatch):
    """ViG-T's compiled training step under bf16 autocast: the op's backward in every block by default, none with
    VIG_FUSED_OFF=gk_proj_train, and the loss and gradients within bf16 rounding of each other."""
    import timm
    import vig  # noqa: F401  (registers the models)
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=64, num_classes=10).cuda()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    outs = {}
    for off in ("gk_proj_train", ""):
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        torch._dynamo.reset()
        step = torch.compile(model)
        model.zero_grad()
        with torch.autocast("cuda", torch.bfloat16), torch.profiler.profile() as prof:
            loss = step(x).float().square().mean()
            loss.backward()
        torch.cuda.synchronize()
        outs[off] = [loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]
        outs[off + "_calls"] = sum("low_rank_gate_bwd" in e.name for e in prof.events())
    assert outs["gk_proj_train_calls"] == 0 and outs["_calls"] >= len(model.blocks), outs
    assert max(_rel(a, b) for a, b in zip(outs[""], outs["gk_proj_train"])) <= 2e-2


if __name__ == "__main__":
    print(json.dumps(run_cases()))
