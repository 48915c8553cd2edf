"""The mixer's 2D gate + o_proj as the custom op vig::gate_linear (ViG's inference on CUDA in bf16 / fp16).

CPU: the kernel runs under TRITON_INTERPRET=1 in one child process (this file run as a script): the op's output and
every input grad (its autograd recomputes the gate) against float64, at shapes that leave partial row and column
blocks, a head width that is not a power of two, and outputs wider than one column block; the op compiled with
fullgraph against the op eager; torch.library.opcheck; the FLOP count against the split path's; the mixer compiled
for inference with the route forced on for fp32 CPU tensors (its graph holds the op) against its split path. Without
the interpreter: the mixer's routes (dtype, grads, out_act) and the argument checks. CUDA: bf16, fp16 and fp32 at
ViG-T's and ViG-B's shapes against float64, half dtypes no worse than the split path, and a ViG-T mixer under
autocast taking the op at inference.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from fused_checks import assert_import_leaves_unloaded
from fused_checks import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")
# (name, leading shape, heads, head width D, output width N, dtype, out_silu)
CASES = [("fp32_partial_blocks", (3, 47), 3, 16, 40, torch.float32, True),
         ("fp32_d24_wide", (70,), 2, 24, 272, torch.float32, False),
         ("bf16_rows130_wide", (130,), 2, 32, 300, torch.bfloat16, True),
         ("fp16_d8", (2, 9), 4, 8, 24, torch.float16, False)]
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3, torch.float16: 5e-3}
GRADS = ("do", "dloc", "dgp", "dwg", "dwl", "dw")
EPS = 1e-6


def _inputs(lead, heads, D, N, dtype, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    C = heads * D
    o, loc, gp = (torch.randn(*lead, C, generator=gen).to(device, dtype) for _ in range(3))
    wg, wl = ((1 + 0.2 * torch.randn(D, generator=gen)).to(device) for _ in range(2))
    w = (torch.randn(N, C, generator=gen) / C ** 0.5).to(device, dtype)
    dy = torch.randn(*lead, N, generator=gen).to(device, dtype)
    return (o, loc, gp, wg, wl, w), dy


def split_path(o, loc, gp, wg, wl, w, eps, out_silu):
    """The plain composition, per head of D = wg.numel() channels: norms, sigmoid blend, SiLU, then F.linear; the
    gate's output is rounded to the inputs' dtype before the projection, as the models' split path does."""
    D = wg.numel()
    work = torch.promote_types(o.dtype, torch.float32)  # fp32 math for half inputs; float64 stays float64
    heads = [t.unflatten(-1, (-1, D)).to(work) for t in (o, loc, gp)]

    def rms(t, weight):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * weight

    a = torch.lerp(rms(heads[1], wl), rms(heads[0], wg), torch.sigmoid(heads[2]))
    a = F.silu(a) if out_silu else a
    return F.linear(a.flatten(-2).to(w.dtype), w)


def _grads(fn, inputs, dy, dtype=None):
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in inputs]
    y = fn(*leaves)
    return (y, *torch.autograd.grad(y, leaves, dy.to(y.dtype)))


def _op_errors(inputs, dy, out_silu):
    from vig.layers.fused.gate_linear_op import gate_linear
    got = _grads(lambda *t: gate_linear(*t, EPS, out_silu), inputs, dy)
    exact = _grads(lambda *t: split_path(*t, EPS, out_silu), inputs, dy, torch.float64)
    split = _grads(lambda *t: split_path(*t, EPS, out_silu), inputs, dy)
    names = ("y",) + GRADS
    errs = {n: _rel(g, e) for n, g, e in zip(names, got, exact)}
    errs.update({n + "_split": _rel(s, e) for n, s, e in zip(names, split, exact)})
    errs["dtypes"] = [str(t.dtype) for t in got]
    errs["shapes"] = [list(t.shape) for t in got]
    return got, errs


def _flops(fn):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def run_cases():
    from vig.layers.fused.gate_linear_op import gate_linear
    out = {}
    for name, lead, heads, D, N, dtype, out_silu in CASES:
        inputs, dy = _inputs(lead, heads, D, N, dtype)
        eager, errs = _op_errors(inputs, dy, out_silu)
        torch._dynamo.reset()
        compiled = torch.compile(lambda *t: gate_linear(*t, EPS, out_silu), backend="aot_eager", fullgraph=True)
        got = _grads(compiled, inputs, dy)
        errs.update({n + "_compiled_vs_eager": _rel(g, e) for n, g, e in zip(("y",) + GRADS, got, eager)})
        args = tuple(t.clone().requires_grad_() for t in inputs) + (EPS, out_silu)
        report = torch.library.opcheck(gate_linear, args)
        errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
        out[name] = errs
    inputs, dy = _inputs((10,), 2, 8, 12, torch.float32)
    out["flops"] = {"fused": _flops(lambda: _grads(lambda *t: gate_linear(*t, EPS, True), inputs, dy)),
                    "split": _flops(lambda: _grads(lambda *t: split_path(*t, EPS, True), inputs, dy))}
    out["mixer"] = _compiled_mixer()
    return out


def _compiled_mixer():
    """ViG-T's mixer (with its out_act) at inference, compiled with the route forced on for CPU tensors and for fp32,
    against its split path: the relative RMSE and whether the op was in the graph."""
    import vig.layers.bigla_attn as attn
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(32, 2, use_act_in_conv=True, use_out_act=True).eval()
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        plain = mixer(x, (3, 4))
        real, dtypes = attn.fused_op_enabled, attn.FUSED_GATE_LINEAR_DTYPES
        attn.fused_op_enabled = lambda t, name="": name == "gate_linear"
        attn.FUSED_GATE_LINEAR_DTYPES = (torch.float32,)
        graphs = []

        def backend(gm, example_inputs):
            graphs.append(str(gm.graph))
            return gm
        try:
            torch._dynamo.reset()
            fused = torch.compile(mixer, backend=backend, fullgraph=True)(x, (3, 4))
        finally:
            attn.fused_op_enabled, attn.FUSED_GATE_LINEAR_DTYPES = real, dtypes
    return {"y": _rel(fused, plain), "op_in_graph": int(any("vig.gate_linear" in g for g in graphs))}


@pytest.mark.parametrize("name,dtype", [(c[0], c[5]) for c in CASES])
def test_interpreted_op_matches_float64_and_compiles(interpreted, name, dtype):
    r = interpreted[name]
    lead, heads, D, N = next(c[1:5] for c in CASES if c[0] == name)
    C = heads * D
    assert r["dtypes"] == [str(dtype)] * 4 + ["torch.float32"] * 2 + [str(dtype)]
    assert r["shapes"] == [[*lead, N]] + [[*lead, C]] * 3 + [[D], [D], [N, C]]
    for k in ("y",) + GRADS:
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"
        assert r[k + "_compiled_vs_eager"] <= 1e-6, f"{name}: compiled {k} differs from eager ({r})"
    if dtype == torch.float32:  # in half dtypes the interpreter truncates its stores; the GPU test compares there
        for k in ("y",) + GRADS:
            assert r[k] <= 1.05 * r[k + "_split"] + 1e-7, f"{name}: {k} worse than the split path ({r})"
    assert r["opcheck"] == {}, r["opcheck"]


def test_interpreted_flops_count_the_split_paths_work(interpreted):
    """The op counts as the o_proj it replaces; its backward's matmuls as they run (dx and dw): the split path's
    total, 3 x 2 M C N."""
    f = interpreted["flops"]
    assert f["fused"] == f["split"] == 3 * 2 * 10 * 16 * 12, f


def test_interpreted_compiled_mixer_uses_the_op(interpreted):
    r = interpreted["mixer"]
    assert r["op_in_graph"] == 1 and r["y"] <= 1e-5, r


def test_registering_the_op_loads_no_kernel():
    assert_import_leaves_unloaded(("vig.layers.fused.gate_linear_op", "vig.layers.bigla_attn"),
                                  "vig.layers.fused.gate_linear")


def test_op_checks_its_arguments():
    from vig.layers.fused.gate_linear_op import gate_linear
    (o, loc, gp, wg, wl, w), _ = _inputs((5,), 2, 8, 12, torch.float32)
    with pytest.raises(ValueError, match=r"^gate_linear: o \(5, 16\), loc \(5, 8\) and gate \(5, 16\) must have one"):
        gate_linear(o, loc[:, :8], gp, wg, wl, w, EPS, False)
    with pytest.raises(ValueError, match=r"^gate_linear: norm weights \(6,\), \(6,\) must both be \(D,\) with D a "
                                         r"divisor of the channels C = 16"):
        gate_linear(o, loc, gp, wg[:6], wl[:6], w, EPS, False)
    with pytest.raises(ValueError, match=r"^gate_linear: norm weights \(8,\), \(4,\)"):
        gate_linear(o, loc, gp, wg, wl[:4], w, EPS, False)
    with pytest.raises(ValueError, match=r"^gate_linear: weight must be \[N, C\] with C = 16, got \(12, 8\)"):
        gate_linear(o, loc, gp, wg, wl, w[:, :8], EPS, False)
    with pytest.raises(ValueError, match=r"^gate_linear: the weight's rows must be contiguous"):
        gate_linear(o, loc, gp, wg, wl, torch.randn(16, 12).t(), EPS, False)


@pytest.mark.parametrize("autocast,grad,out_act,fused", [(True, False, True, True), (True, False, False, True),
                                                         (False, False, True, False), (True, True, True, False)])
def test_mixer_routes(autocast, grad, out_act, fused, monkeypatch):
    """Inference in a half compute dtype takes the op (with or without the out SiLU); fp32 and steps that need
    grads keep the split path. The route is forced on for CPU tensors and the op replaced by a marker."""
    import vig.layers.bigla_attn as attn
    import vig.layers.fused.gate_linear_op as op_module
    calls = []

    def marker(o, loc, gp, wg, wl, w, eps, out_silu):
        calls.append((w.dtype, out_silu))
        return torch.zeros((*o.shape[:-1], w.shape[0]), dtype=w.dtype)
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name="": name == "gate_linear")
    monkeypatch.setattr(op_module, "gate_linear", marker)
    mixer = attn.BiGLAttention(32, 2, use_out_act=out_act)
    x = torch.randn(2, 12, 32, requires_grad=grad)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
        y = mixer(x, (3, 4))
    assert calls == ([(torch.bfloat16, out_act)] if fused else [])
    assert bool((y == 0).all()) == fused


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("heads,out_silu", [(3, True), (12, False)])
def test_op_on_cuda_matches_float64(dtype, heads, out_silu):
    inputs, dy = _inputs((4 * 196 + 3,), heads, 64, heads * 64, dtype, "cuda", seed=heads)
    _, errs = _op_errors(inputs, dy, out_silu)
    for k in ("y",) + GRADS:
        assert errs[k] <= TOL[dtype], errs
        assert errs[k] <= 1.05 * errs[k + "_split"] + 1e-6, errs


@cuda
def test_mixer_under_autocast_takes_the_op_at_inference(monkeypatch):
    from vig.layers.bigla_attn import BiGLAttention
    torch.manual_seed(0)
    mixer = BiGLAttention(192, 3, use_act_in_conv=True, use_out_act=True).cuda().eval()
    x = torch.randn(2, 196, 192, device="cuda")
    results = []
    for off in ("", "gate_linear"):
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16), torch.profiler.profile() as prof:
            y = mixer(x, (14, 14))
        results.append((y.float(), "vig::gate_linear" in {e.name for e in prof.events()}))
    (y, used), (y0, used0) = results
    assert used and not used0
    assert _rel(y, y0) <= 1e-2


if __name__ == "__main__":
    torch.set_num_threads(1)  # the child of one pytest-xdist worker: one core
    print(json.dumps(run_cases()))
