"""bigla under forward-mode AD, double backward and CPU autocast, and bigla_triton's input checks (CPU, tiny shapes)."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from vig.ops.bigla import bigla


def _inputs(T=11, K=4, V=3, dtype=torch.float64, seed=0, B=2, H=2):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, B, T, H, K, generator=g, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, generator=g, dtype=dtype))
    return [q, k, v, gf, gb]


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_forward_mode_ad_keeps_the_tangent(backend):
    """torch.autograd.forward_ad through bigla: the custom op has no jvp rule, and its output came back with no
    tangent at all (unpack_dual(o).tangent was None), silently."""
    xs = _inputs()
    tangents = [torch.randn_like(x) for x in xs]
    _, ref = torch.func.jvp(lambda *a: bigla(*a, backend="naive"), tuple(xs), tuple(tangents))
    with fwAD.dual_level():
        o = bigla(*(fwAD.make_dual(x, t) for x, t in zip(xs, tangents)), backend=backend)
        tangent = fwAD.unpack_dual(o).tangent
    assert tangent is not None
    assert _rel(tangent, ref) <= 1e-12


def test_forward_mode_ad_with_triton_is_refused_by_name():
    xs = _inputs(K=16, V=16)
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="forward-mode AD"):
        bigla(fwAD.make_dual(xs[0], torch.ones_like(xs[0])), *xs[1:], backend="triton")


@pytest.mark.parametrize("normalizer", [None, 16.0])
def test_double_backward_of_the_torch_backend(normalizer):
    """create_graph=True, then a gradient of the gradients: it raised "no autograd formula was registered for
    vig.bigla_backward. Please use register_autograd to add one"."""
    xs = [x.requires_grad_() for x in _inputs(T=5, K=2, V=2, seed=1, B=1, H=1)]
    assert torch.autograd.gradgradcheck(lambda *a: bigla(*a, backend="torch", gate_logit_normalizer=normalizer), xs)


def test_double_backward_matches_naive_with_some_inputs_frozen():
    xs = _inputs(T=9, seed=2)
    grads = {}
    for backend in ("torch", "naive"):
        q, v = (xs[i].clone().requires_grad_() for i in (0, 2))
        o = bigla(q, xs[1], v, xs[3], xs[4], backend=backend)
        (dq,) = torch.autograd.grad(o.square().sum(), q, create_graph=True)
        grads[backend] = torch.autograd.grad(dq.square().sum(), (q, v))
    for a, b in zip(grads["torch"], grads["naive"]):
        assert _rel(a, b) <= 1e-12


def test_the_fused_backward_op_refuses_a_second_backward_by_name():
    xs = [x.requires_grad_() for x in _inputs(T=5)]
    dq = torch.ops.vig.bigla_backward(*xs, torch.ones(2, 5, 2, 3, dtype=torch.float64), 0.5, "torch")[0]
    with pytest.raises(NotImplementedError, match="no double backward"):
        dq.sum().backward()


@pytest.mark.parametrize("backend", ["torch", "naive"])
def test_cpu_autocast_keeps_fp32_precision(backend):
    """fp32 inputs inside torch.autocast('cpu', bfloat16): the op's matmuls ran in bf16 in eager mode (o at ~4e-3
    relative RMSE of float64), while its backward and the compiled custom op computed in fp32."""
    xs = _inputs(T=40, K=16, V=16, dtype=torch.float32)
    ref = bigla(*(x.double() for x in xs), backend="naive")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o = bigla(*xs, backend=backend)
    assert o.dtype == torch.float32
    assert _rel(o, ref) <= 1e-5


@pytest.mark.parametrize("name, bad, match", [
    ("k", torch.randn(1, 5, 1, 32), r"k must have the shape of q"),
    ("v", torch.randn(1, 6, 1, 16), r"v must be \[B, T, H, V\]"),
    ("g_fwd", torch.randn(1, 5, 1, 16, dtype=torch.float64), r"g_fwd must be float32 or the input dtype"),
    ("v", torch.randn(1, 5, 1, 16, dtype=torch.bfloat16), r"v has dtype torch.bfloat16 but q has torch.float32"),
])
def test_bigla_triton_checks_its_inputs(name, bad, match):
    """vig.ops.bigla.triton.bigla_triton checked head dims only: a k with another K, or a v with another T, went to
    the kernels (under the interpreter: a finite, wrong output), read through q's sizes."""
    pytest.importorskip("triton")
    from vig.ops.bigla.triton import bigla_triton
    args = dict(zip(("q", "k", "v", "g_fwd", "g_bwd"), _inputs(T=5, K=16, V=16, dtype=torch.float32)))
    args = {n: x[:1, :, :1] for n, x in args.items()}
    args[name] = bad
    with pytest.raises((ValueError, TypeError), match=match):
        bigla_triton(*args.values())
