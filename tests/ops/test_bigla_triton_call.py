"""Routing of the Triton backend (triton_call.py): a plain autograd.Function in eager mode, the
custom op under torch.compile, FLOP counting and functorch. The launchers are replaced by the
op's torch backend so the routing is testable on CPU; the kernels' numerics are tested elsewhere."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("triton")
from vig.ops.bigla import triton_call  # noqa: E402
from vig.ops.bigla.naive import bigla_naive  # noqa: E402


@pytest.fixture
def torch_launchers(monkeypatch):
    """launch.bigla_fwd / bigla_bwd computed by the op's torch backend; counts the calls of each."""
    from vig.ops.bigla.triton import launch
    calls = {"fwd": 0, "bwd": 0, "gnorm": None, "gnorm_bwd": None}

    def fwd(q, k, v, gf, gb, scale, gnorm=None):
        calls["fwd"] += 1
        calls["gnorm"] = gnorm
        return torch.ops.vig.bigla(q, k, v, gf, gb, scale, "torch", gnorm)

    def bwd(do, q, k, v, gf, gb, scale, gnorm=None):
        calls["bwd"] += 1
        calls["gnorm_bwd"] = gnorm
        return torch.ops.vig.bigla_backward(q, k, v, gf, gb, do, scale, "torch", gnorm)

    monkeypatch.setattr(launch, "bigla_fwd", fwd)
    monkeypatch.setattr(launch, "bigla_bwd", bwd)
    return calls


def _inputs(T=9, grad=True):
    g = torch.Generator().manual_seed(T)
    q, k = torch.randn(2, 2, T, 2, 16, generator=g, dtype=torch.float64)
    v = torch.randn(2, T, 2, 32, generator=g, dtype=torch.float64)
    gf, gb = F.logsigmoid(torch.randn(2, 2, T, 2, 16, generator=g, dtype=torch.float64))
    return [x.requires_grad_(grad) for x in (q, k, v, gf, gb)]


def test_eager_path_is_an_autograd_function_with_the_oracle_grads(torch_launchers):
    xs = _inputs()
    o = triton_call.bigla_triton_call(*xs, 0.25)
    assert type(o.grad_fn).__name__ == "TritonLaunchBackward"
    do = torch.randn_like(o)
    grads = torch.autograd.grad(o, xs, do)
    ref_in = [x.detach().requires_grad_() for x in xs]
    ref = bigla_naive(*ref_in, 0.25)
    ref_grads = torch.autograd.grad(ref, ref_in, do)
    for a, b in zip((o, *grads), (ref, *ref_grads)):
        assert float((a - b).detach().norm() / b.detach().norm()) <= 1e-10
    assert torch_launchers == {"fwd": 1, "bwd": 1, "gnorm": None, "gnorm_bwd": None}


@pytest.mark.parametrize("compiled", [False, True])
def test_gate_logits_reach_the_launchers_and_get_logit_grads(torch_launchers, compiled):
    """gate_logit_normalizer is handed to both launchers on both routes, and the gradients are the
    logits' (oracle: logsigmoid(x) / n applied before the naive op)."""
    from vig.ops.bigla.gates import log_decays
    q, k, v, gf, gb = _inputs()
    xf, xb = (torch.randn_like(gf).mul(3).requires_grad_() for _ in range(2))
    xs = [q, k, v, xf, xb]

    def f(*args):
        return triton_call.bigla_triton_call(*args, 0.25, 16.0)

    if compiled:
        torch._dynamo.reset()
        f = torch.compile(f, backend="aot_eager", fullgraph=True)
    o = f(*xs)
    do = torch.randn_like(o)
    grads = torch.autograd.grad(o, xs, do)
    ref_in = [x.detach().requires_grad_() for x in xs]
    ref = bigla_naive(*ref_in[:3], *(log_decays(x, 16.0) for x in ref_in[3:]), 0.25)
    ref_grads = torch.autograd.grad(ref, ref_in, do)
    for a, b in zip((o, *grads), (ref, *ref_grads)):
        assert float((a - b).detach().norm() / b.detach().norm()) <= 1e-10
    assert (torch_launchers["gnorm"], torch_launchers["gnorm_bwd"]) == (16.0, 16.0)


def test_flop_counting_goes_through_the_custom_op(torch_launchers):
    assert not triton_call._watched()
    xs = _inputs(grad=False)
    with FlopCounterMode(display=False) as counter:
        assert triton_call._watched()
        triton_call.bigla_triton_call(*xs, 0.25)
    assert counter.get_flop_counts()["Global"].get(torch.ops.vig.bigla, 0) > 0
    assert torch_launchers["fwd"] == 1


def test_compiled_call_uses_the_custom_op_without_graph_breaks(torch_launchers):
    xs = _inputs()

    def f(q, k, v, gf, gb):
        return triton_call.bigla_triton_call(q, k, v, gf, gb, 0.25).square().sum()

    torch._dynamo.reset()
    explained = torch._dynamo.explain(f)(*xs)
    assert explained.graph_break_count == 0, explained.break_reasons
    ops = [str(n.target) for g in explained.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert any("vig.bigla" in o for o in ops), ops
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    loss = compiled(*xs)
    grads = torch.autograd.grad(loss, xs)
    eager_grads = torch.autograd.grad(f(*xs), xs)
    for a, b in zip(grads, eager_grads):
        assert float((a - b).detach().norm() / b.detach().norm()) <= 1e-10
