"""backend="torch" (chunked) against the naive oracle run in float64: outputs and all five grads.

Relative RMSE = ||a - b||_2 / ||b||_2; max relative error = max|a - b| / max|b| (per tensor).
The reference always sees the very same input values as the tested run, upcast to float64.
"""
import pytest
import torch
import torch.nn.functional as F

from vig.ops.bigla import bigla
from vig.ops.bigla.chunk import bigla_chunk
from vig.ops.bigla.naive import bigla_naive

NAMES = ("o", "dq", "dk", "dv", "dg_fwd", "dg_bwd")
PAIRS = ((16, 32), (32, 64), (64, 64), (128, 128))
T_LIST = (1, 2, 15, 16, 17, 63, 64, 65, 196, 197, 256)  # 1000 and 3136 have their own tests


def realistic_gates(shape, gen):
    return F.logsigmoid(torch.randn(shape, generator=gen)) / 16  # ViG's gate: logsigmoid(x) / 16


def make_inputs(B, T, H, K, V, dtype=torch.float32, gate_dtype=None, gates=realistic_gates, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, B, T, H, K, generator=gen)
    v = torch.randn(B, T, H, V, generator=gen)
    gf, gb = gates((2, B, T, H, K), gen)
    do = torch.randn(B, T, H, V, generator=gen)
    gate_dtype = gate_dtype or dtype
    return [q.to(dtype), k.to(dtype), v.to(dtype), gf.to(gate_dtype), gb.to(gate_dtype)], do.to(dtype)


def out_and_grads(fn, inputs, do):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    o = fn(*leaves)
    (o * do).sum().backward()
    return [o] + [x.grad for x in leaves]


def reference(inputs, do):
    return out_and_grads(bigla_naive, [x.double() for x in inputs], do.double())


def assert_matches(got, ref, rmse_tol, max_tol=None, label=""):
    for name, a, b in zip(NAMES, got, ref):
        assert a is not None and torch.isfinite(a).all(), f"{label} {name}: missing or non-finite"
        diff = a.double() - b
        # + 1e-12: gate grads are exactly 0 at T=1 (nothing is decayed), so allow exact zeros there
        assert diff.norm() <= rmse_tol * b.norm() + 1e-12, f"{label} {name}: rel RMSE {diff.norm() / b.norm():.3e}"
        if max_tol is not None:
            assert diff.abs().max() <= max_tol * b.abs().max() + 1e-12, (
                f"{label} {name}: max rel err {diff.abs().max() / b.abs().max():.3e}")


def check_fp32(B, T, H, K, V, gates=realistic_gates, chunk_size=64, seed=0):
    inputs, do = make_inputs(B, T, H, K, V, gates=gates, seed=seed)
    got = out_and_grads(lambda *x: bigla_chunk(*x, K ** -0.5, chunk_size=chunk_size), inputs, do)
    assert got[0].dtype == torch.float32
    assert_matches(got, reference(inputs, do), 1e-5, 1e-4, label=f"T={T} K={K} V={V}")


@pytest.mark.parametrize("T", T_LIST)
@pytest.mark.parametrize("K,V", [(16, 32), (32, 64)])
def test_fp32_every_T(T, K, V):
    check_fp32(2, T, 1, K, V)


@pytest.mark.parametrize("T", (17, 65, 197))
@pytest.mark.parametrize("K,V", PAIRS[2:])
def test_fp32_every_KV_pair(T, K, V):
    check_fp32(1, T, 2, K, V)


def test_fp32_T1000():
    check_fp32(1, 1000, 2, 32, 64)


def test_fp32_T3136():
    # the naive oracle's backward grows ~T^2 here, so the smallest head shape
    check_fp32(1, 3136, 1, 16, 32)


@pytest.mark.parametrize("T", (1, 16, 65, 197, 256))
@pytest.mark.parametrize("K,V", PAIRS)
def test_bf16(T, K, V):
    gate_dtype = torch.float32 if K == 32 else torch.bfloat16  # the contract allows either
    inputs, do = make_inputs(1, T, 2, K, V, dtype=torch.bfloat16, gate_dtype=gate_dtype)
    got = out_and_grads(lambda *x: bigla(*x, backend="torch"), inputs, do)
    assert got[0].dtype == torch.bfloat16 and got[4].dtype == gate_dtype
    assert_matches(got, reference(inputs, do), 5e-3, label=f"bf16 T={T} K={K}")


def test_fp16_and_fp64_dtypes():
    inputs, do = make_inputs(1, 40, 2, 16, 32, dtype=torch.float16, gate_dtype=torch.float32)
    got = out_and_grads(lambda *x: bigla(*x, backend="torch"), inputs, do)
    assert got[0].dtype == torch.float16
    assert_matches(got, reference(inputs, do), 5e-3, label="fp16")
    inputs, do = make_inputs(1, 70, 2, 16, 32, dtype=torch.float64)
    got = out_and_grads(lambda *x: bigla(*x, backend="torch"), inputs, do)
    assert got[0].dtype == torch.float64
    assert_matches(got, reference(inputs, do), 1e-12, 1e-11, label="fp64")


GATE_RANGES = {
    "strong": lambda s, g: F.logsigmoid(3 * torch.randn(s, generator=g)),  # down to ~ -10 per step
    "uniform_0_5": lambda s, g: -5 * torch.rand(s, generator=g),
    "extreme": lambda s, g: torch.full(s, -20.0),
    "near_zero": lambda s, g: torch.full(s, -1e-6),
    "mixed_channels": lambda s, g: torch.where(torch.rand(s, generator=g) < 0.5, -20.0, -1e-6),
    "exact_zero": lambda s, g: torch.zeros(s),
}


@pytest.mark.parametrize("kind", GATE_RANGES)
def test_gate_ranges(kind):
    check_fp32(2, 150, 2, 16, 32, gates=GATE_RANGES[kind], chunk_size=32)


@pytest.mark.parametrize("g", (-20.0, -1e-6))
def test_long_sequence_stays_finite(g):
    inputs, do = make_inputs(1, 16384, 1, 16, 32, gates=lambda s, _: torch.full(s, g))
    got = out_and_grads(lambda *x: bigla_chunk(*x, 0.25), inputs, do)
    for name, x in zip(NAMES, got):
        assert torch.isfinite(x).all(), name
    # no decay left between neighbours at g=-20: each output is its own diagonal term
    if g == -20.0:
        q, k, v = inputs[:3]
        diag = 0.25 * (q * k).sum(-1, keepdim=True) * v
        assert torch.allclose(got[0], diag, rtol=1e-4, atol=1e-4)


def test_minus_inf_gate_is_a_hard_reset():
    inputs, do = make_inputs(1, 90, 2, 16, 32)
    inputs[3][0, 40] = float("-inf")  # forward state fully forgets everything before t=40
    inputs[4][0, 70, :, :5] = float("-inf")
    got = out_and_grads(lambda *x: bigla_chunk(*x, 0.25, chunk_size=32), inputs, do)
    assert_matches(got, reference(inputs, do), 1e-5, 1e-4, label="-inf gates")


def test_chunk_sizes_agree():
    inputs, do = make_inputs(2, 203, 2, 32, 64)
    runs = {c: out_and_grads(lambda *x: bigla_chunk(*x, 0.2, chunk_size=c), inputs, do) for c in (16, 24, 32, 64, 128)}
    for c in (16, 24, 32, 128):
        assert_matches(runs[c], [x.double() for x in runs[64]], 1e-5, 1e-4, label=f"chunk {c} vs 64")


def qkv_views(inputs, layout):
    """The same values as q, k, v, g_fwd, g_bwd, but as strided slices of fused projections."""
    q, k, v, gf, gb = inputs
    B, T, H, K = q.shape
    if layout == "qkv_last_dim":  # one Linear to H*(2K+V), then split: views with a long row stride
        qkv = torch.cat([x.reshape(B, T, -1) for x in (q, k, v)], -1)
        views = [qkv[..., :H * K].view(B, T, H, K), qkv[..., H * K:2 * H * K].view(B, T, H, K),
                 qkv[..., 2 * H * K:].view(B, T, H, -1)]
        gates = torch.cat([gf, gb], -1)  # [B, T, H, 2K], halves of one gate projection
        return views + [gates[..., :K], gates[..., K:]]
    if layout == "stacked":  # [B, T, 3, H, D] and [B, T, 2, H, K] -> unbind along dim 2
        qk = torch.stack([q, k], 2)
        gates = torch.stack([gf, gb], 2)
        return [qk[:, :, 0], qk[:, :, 1], v.transpose(0, 1).contiguous().transpose(0, 1),
                gates[:, :, 0], gates[:, :, 1]]
    raise ValueError(layout)


@pytest.mark.parametrize("layout", ("qkv_last_dim", "stacked"))
def test_strided_inputs_match_contiguous(layout):
    inputs, do = make_inputs(2, 77, 2, 16, 32)
    dense = out_and_grads(lambda *x: bigla(*x, backend="torch"), inputs, do)
    views = qkv_views(inputs, layout)
    assert not all(x.is_contiguous() for x in views)
    for a, b in zip(views, inputs):
        assert torch.equal(a, b)
    o = bigla(*views, backend="torch")
    assert torch.allclose(o, dense[0], rtol=1e-6, atol=1e-6)
    # grads through the fused tensors reach the same values
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    o = bigla(*qkv_views(leaves, layout), backend="torch")
    (o * do).sum().backward()
    for name, leaf, ref in zip(NAMES[1:], leaves, dense[1:]):
        assert torch.allclose(leaf.grad, ref, rtol=1e-6, atol=1e-6), name


def test_dispatch_auto_on_cpu_is_torch():
    inputs, _ = make_inputs(1, 33, 2, 16, 32)
    assert torch.equal(bigla(*inputs), bigla(*inputs, backend="torch"))
    assert torch.equal(bigla(*inputs, scale=0.3), bigla_chunk(*inputs, 0.3))


def test_torch_compile_traces_without_graph_break():
    inputs, do = make_inputs(1, 70, 2, 16, 32)
    compiled = torch.compile(lambda *x: bigla_chunk(*x, 0.25, chunk_size=32), backend="eager", fullgraph=True)
    got = out_and_grads(compiled, inputs, do)
    eager = out_and_grads(lambda *x: bigla_chunk(*x, 0.25, chunk_size=32), inputs, do)
    assert_matches(got, [x.double() for x in eager], 1e-6, label="compiled")


@pytest.mark.parametrize("backend", ["naive", "torch"])
@pytest.mark.parametrize("normalizer", [16, 1.0])
def test_gate_logits_match_log_decays_applied_first(backend, normalizer):
    """bigla(..., gate_logit_normalizer=n) on logits x equals bigla on logsigmoid(x) / n, with the
    gradients of x (float64; positive logits too, which log-space gates could not be)."""
    from vig.ops.bigla.gates import log_decays
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 2, 37, 2, 16, generator=g, dtype=torch.float64)
    v = torch.randn(2, 37, 2, 32, generator=g, dtype=torch.float64)
    xf, xb = torch.randn(2, 2, 37, 2, 16, generator=g, dtype=torch.float64) * 3
    xs = [x.requires_grad_() for x in (q, k, v, xf, xb)]
    o = bigla(*xs, backend=backend, gate_logit_normalizer=normalizer)
    do = torch.randn(o.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(o, xs, do)
    ref_in = [x.detach().requires_grad_() for x in xs]
    ref = bigla_naive(*ref_in[:3], *(log_decays(x, normalizer) for x in ref_in[3:]))
    ref_grads = torch.autograd.grad(ref, ref_in, do)
    for a, b in zip((o, *grads), (ref, *ref_grads)):
        assert float((a - b).norm() / b.norm()) <= 1e-12
    assert float(ref_grads[3].norm()) > 0


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_torch_func_transforms_run_the_plain_torch_path(backend):
    """torch.func.grad and vmap through bigla (torch raises on the custom op's autograd under functorch)."""
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(2, 2, 17, 2, 16, generator=g, dtype=torch.float64)
    v = torch.randn(2, 17, 2, 32, generator=g, dtype=torch.float64)
    x = torch.randn(2, 17, 2, 16, generator=g, dtype=torch.float64)

    def loss(q, x):
        return bigla(q, k, v, x, x.flip(1), backend=backend, gate_logit_normalizer=16).square().sum()

    gq, gx = torch.func.grad(loss, argnums=(0, 1))(q, x)
    qq, xx = q.clone().requires_grad_(), x.clone().requires_grad_()
    rq, rx = torch.autograd.grad(loss(qq, xx), (qq, xx))
    assert float((gq - rq).norm() / rq.norm()) <= 1e-12 and float((gx - rx).norm() / rx.norm()) <= 1e-12
    per_sample = torch.func.vmap(lambda qi: bigla(qi[None], k[:1], v[:1], x[:1], x[:1], backend=backend))(q[:1])
    assert torch.allclose(per_sample[0], bigla(q[:1], k[:1], v[:1], x[:1], x[:1], backend="naive"))


def test_triton_backend_under_torch_func_is_refused_by_name():
    q = torch.randn(1, 3, 1, 16)
    with pytest.raises(NotImplementedError, match="torch.func transforms"):
        torch.func.grad(lambda q: bigla(q, q, q, -q.abs(), -q.abs(), backend="triton").sum())(q)
