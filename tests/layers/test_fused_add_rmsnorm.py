"""Fused residual add + RMSNorm (and the GLABlock that uses it), forward and backward.

CPU: the kernels run under TRITON_INTERPRET=1 in one child process (this file run as a script:
interpreter mode must be on before triton decorates the kernels), which prints relative errors
against a float64 oracle as JSON. The block case forces the fused dispatch on CPU tensors and
compares a ViG-T-style GLABlock (out SiLU, SiLU in conv) with every fused kernel against the
plain path. CUDA: bf16 against float64 and no worse than the plain path.
"""
import json
import os

import pytest
import torch
from fused_checks import assert_import_leaves_unloaded
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")

# (name, shape, dtype of x, dtype of y, x strided, outputs the loss uses: "both" | "n_only" | "s_only", n's dtype
# (None: s's)). Off CUDA the backward's persistent grid has 8 programs (2 per SM, grid.sm_count's 4): the rows600
# cases walk 10 (D 48) and 19 (D 96) row blocks with them, so programs sum more than one block.
CASES = [
    ("fp32_d64", (2, 5, 64), torch.float32, torch.float32, False, "both", None),
    ("fp32_d192_rows33", (33, 192), torch.float32, torch.float32, False, "both", None),
    ("fp32_d48_rows600", (2, 300, 48), torch.float32, torch.float32, False, "both", None),
    ("fp32_d48_strided", (3, 7, 48), torch.float32, torch.float32, True, "both", None),
    ("fp32_d64_n_only", (2, 9, 64), torch.float32, torch.float32, False, "n_only", None),
    ("fp32_d64_s_only", (2, 3, 64), torch.float32, torch.float32, False, "s_only", None),
    ("bf16_d192", (3, 11, 192), torch.bfloat16, torch.bfloat16, False, "both", None),
    ("mixed_fp32_bf16_d96", (2, 6, 96), torch.float32, torch.bfloat16, False, "both", None),
    ("mixed_n_bf16_rows600", (2, 300, 96), torch.float32, torch.bfloat16, False, "both", torch.bfloat16),
]
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}
KEYS = ("s", "n", "dx", "dy", "dw")


def _oracle(x, y, w, eps=1e-6):
    s = x + y
    return s, s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps) * w


def _inputs(shape, dt_x, dt_y, strided, gen, device="cpu", dt_n=None):
    if strided:  # x as the transpose view of a [.., D, N] tensor: last-dim stride != 1
        x = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=gen).transpose(-1, -2)
    else:
        x = torch.randn(shape, generator=gen)
    x = x.to(device, dt_x).detach().requires_grad_()
    y = torch.randn(shape, generator=gen).to(device, dt_y).requires_grad_()
    w = (1 + 0.3 * torch.randn(shape[-1], generator=gen)).to(device).requires_grad_()
    dt = torch.promote_types(dt_x, dt_y)
    ds = torch.randn(shape, generator=gen).to(device, dt)
    dn = torch.randn(shape, generator=gen).to(device, dt_n or dt)
    return x, y, w, ds, dn


def _grads(fn, x, y, w, ds, dn, used):
    s, n = fn(x, y, w)
    outs, gouts = {"both": ((s, n), (ds, dn)), "n_only": ((n,), (dn,)), "s_only": ((s,), (ds,))}[used]
    grads = torch.autograd.grad(outs, (x, y, w), gouts, allow_unused=True)
    return [s, n, *(torch.zeros_like(w) if g is None else g for g in grads)]  # s_only: w unused


def _compare(x, y, w, ds, dn, used, fused_fn):
    """Relative errors of the fused and the plain path (in the test dtypes) vs float64."""
    from vig.layers.norms import rms_norm_reference

    def plain(a, b, wt):
        s = a + b
        return s, rms_norm_reference(s, wt, 1e-6).to(dn.dtype)  # as an autocast op would round it
    fused = _grads(fused_fn, x, y, w, ds, dn, used)
    ref_in = [t.detach().double().requires_grad_() for t in (x, y, w)]
    ref = _grads(_oracle, *ref_in, ds.double(), dn.double(), used)
    pl = _grads(plain, x, y, w, ds, dn, used)
    r = {k: _rel(f, g) for k, f, g in zip(KEYS, fused, ref)}
    r.update({k + "_plain": _rel(p, g) for k, p, g in zip(KEYS, pl, ref)})
    r["dtypes"] = [str(t.dtype) for t in fused]
    r["shape"] = list(fused[1].shape)
    return r


def _force_fused(monkeypatch_like):
    """Make every layer's dispatch take the fused kernels on CPU tensors (VIG_FUSED still obeyed)."""
    import vig.layers.bigla_attn as attn
    import vig.layers.blocks as blocks
    import vig.layers.mlp as mlp
    import vig.layers.norms as norms

    def on(t, name=""):
        return os.environ.get("VIG_FUSED", "1") != "0"
    for mod in (attn, mlp, norms):
        monkeypatch_like(mod, "fused_enabled", on)
    monkeypatch_like(blocks, "fused_op_enabled", on)


def _block_run(block, x, fused):
    os.environ["VIG_FUSED"] = "1" if fused else "0"
    block.zero_grad()
    xx = x.detach().clone().requires_grad_()
    y = block(xx, (4, 5))
    y.pow(2).mean().backward()
    return [y, xx.grad] + [p.grad for p in block.parameters()]


def run_cases():
    from vig.layers import GLABlock
    from vig.layers.fused.add_rmsnorm_op import add_rms_norm_fused
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, shape, dt_x, dt_y, strided, used, dt_n in CASES:
        ins = _inputs(shape, dt_x, dt_y, strided, gen, dt_n=dt_n)
        out[name] = _compare(*ins, used, lambda a, b, w: add_rms_norm_fused(a, b, w, 1e-6, dt_n))
    out["chain_compiled"] = _compiled_chain(torch.randn(2, 20, 64))  # before _force_fused: see its doc
    _force_fused(setattr)
    torch.manual_seed(0)
    block = GLABlock(64, 2, use_act_in_conv=True, use_out_act=True).train()  # ViG-T's mixer options
    with torch.no_grad():  # non-trivial norm weights so their grads and scaling are exercised
        for p in block.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 20, 64)
    plain, fused = _block_run(block, x, False), _block_run(block, x, True)
    names = ["y", "dx"] + [n for n, _ in block.named_parameters()]
    out["block"] = {n: _rel(f, p) for n, f, p in zip(names, fused, plain)}
    chain = _Chain().train()
    plain, fused = _chain_run(chain, x, False), _chain_run(chain, x, True)
    names = ["y", "dx"] + [n for n, _ in chain.named_parameters()]
    out["chain"] = {n: _rel(f, p) for n, f, p in zip(names, fused, plain)}
    out["op"] = _op_checks(gen)
    out["autocast_add_norm"] = _autocast_add_norm()
    return out


def _op_checks(gen):
    """The custom op compiled with fullgraph against the op eager, and torch.library.opcheck (schema, fake
    tensors, autograd registration), with a bf16 branch and a bf16 norm output on an fp32 stream."""
    from vig.layers.fused.add_rmsnorm_op import add_rms_norm_fused, add_rms_norm_op
    x, y, w, ds, dn = _inputs((2, 40, 32), torch.float32, torch.bfloat16, False, gen, dt_n=torch.bfloat16)

    def fn(a, b, wt):
        return add_rms_norm_fused(a, b, wt, 1e-6, torch.bfloat16)
    eager = _grads(fn, x, y, w, ds, dn, "both")
    torch._dynamo.reset()
    compiled = _grads(torch.compile(fn, backend="aot_eager", fullgraph=True), x, y, w, ds, dn, "both")
    errs = {k: _rel(c, e) for k, c, e in zip(KEYS, compiled, eager)}
    args = (x.detach().reshape(-1, 32).requires_grad_(), y.detach().reshape(-1, 32).requires_grad_(),
            w.detach().requires_grad_(), 1e-6, torch.bfloat16)
    report = torch.library.opcheck(add_rms_norm_op, args)
    errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
    return errs


def _autocast_add_norm():
    """blocks.add_norm(..., autocast_out=True) under CPU bf16 autocast, fused (n written in bf16) and plain (n in fp32,
    rounded by the linear that consumes it), each output and grad against float64; and the norm's dtype."""
    from vig.layers import RMSNorm
    from vig.layers.blocks import add_norm
    _force_fused(setattr)
    torch.manual_seed(0)
    norm, lin = RMSNorm(64), torch.nn.Linear(64, 32)
    with torch.no_grad():
        norm.weight.add_(0.1 * torch.randn(64))
    x = torch.randn(2, 20, 64)
    y = torch.randn(2, 20, 64).bfloat16()
    ramp = torch.linspace(-1, 1, 64)

    def grads(s, n, out, xx, yy, params):
        loss = (s * ramp.to(s.dtype)).sum() + out.to(s.dtype).pow(2).mean()
        return [s, n, *torch.autograd.grad(loss, [xx, yy, *params])]

    def run(fused):
        os.environ["VIG_FUSED"] = "1" if fused else "0"
        xx, yy = x.clone().requires_grad_(), y.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s, n = add_norm(xx, yy, norm, autocast_out=True)
            out = lin(n)
        return str(n.dtype), grads(s, n, out, xx, yy, [norm.weight, lin.weight])
    xx, yy = x.double().requires_grad_(), y.double().requires_grad_()
    w, wl, b = (t.detach().double().requires_grad_() for t in (norm.weight, lin.weight, lin.bias))
    s = xx + yy
    n = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + norm.eps) * w
    ref = grads(s, n, n @ wl.T + b, xx, yy, [w, wl])
    keys = ("s", "n", "dx", "dy", "dw", "dlin")
    out = {}
    for name, fused in (("fused", True), ("plain", False)):
        dtype, got = run(fused)
        out[f"n_dtype_{name}"] = dtype
        out.update({f"{k}_{name}": _rel(g, r) for k, g, r in zip(keys, got, ref)})
    return out


class _Chain(torch.nn.Module):
    """Two blocks and a final RMSNorm: plain = forward of each block, fused = forward_pending."""

    def __init__(self):
        super().__init__()
        from vig.layers import GLABlock, RMSNorm
        self.blocks = torch.nn.ModuleList(GLABlock(64, 2, use_act_in_conv=True, use_out_act=True) for _ in range(2))
        self.norm = RMSNorm(64)
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))

    def forward(self, x, hw, pending_path):
        from vig.layers.blocks import add_norm
        if not pending_path:
            for blk in self.blocks:
                x = blk(x, hw)
            return self.norm(x)
        pending = None
        for blk in self.blocks:
            x, pending = blk.forward_pending(x, pending, hw)
        return add_norm(x, pending, self.norm)[1]


def _compiled_chain(x):
    """Two GLABlocks + final norm compiled (aot_eager, fullgraph) with only the blocks' op route forced on for CPU
    tensors, as a CUDA run compiles them (the other fused layers' eager-only kernels stay off under compile), against
    the plain blocks eager; fp32. Graph breaks counted."""
    import vig.layers.blocks as blocks
    from torch._dynamo.utils import counters
    torch.manual_seed(0)
    chain = _Chain().train()
    plain = _chain_run(chain, x, False)
    real = blocks.fused_op_enabled
    blocks.fused_op_enabled = lambda t, name="": name == "add_rmsnorm"
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)
    try:
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(lambda a, hw, pending_path: chain(a, hw, pending_path), backend=backend,
                                 fullgraph=True)
        fused = _chain_run(chain, x, True, compiled)
    finally:
        blocks.fused_op_enabled = real
    names = ["y", "dx"] + [n for n, _ in chain.named_parameters()]
    out = {n: _rel(f, p) for n, f, p in zip(names, fused, plain)}
    out["graph_breaks"] = sum(counters["graph_break"].values())
    out["op_calls"] = sum(g.count("vig.add_rms_norm") for g in graphs)
    return out


def _chain_run(chain, x, fused, fn=None):
    os.environ["VIG_FUSED"] = "1" if fused else "0"
    chain.zero_grad()
    xx = x.detach().clone().requires_grad_()
    y = (fn or chain)(xx, (4, 5), pending_path=fused)
    y.pow(2).mean().backward()
    return [y, xx.grad] + [p.grad for p in chain.parameters()]


@pytest.mark.parametrize("name,shape,dt_x,dt_y,strided,used,dt_n", CASES)
def test_interpreted_add_rmsnorm_matches_float64(interpreted, name, shape, dt_x, dt_y, strided, used, dt_n):
    r = interpreted[name]
    dt = torch.promote_types(dt_x, dt_y)
    assert r["shape"] == list(shape)
    assert r["dtypes"] == [str(dt), str(dt_n or dt), str(dt_x), str(dt_y), "torch.float32"]
    tol = TOL[torch.bfloat16 if torch.bfloat16 in (dt_x, dt_y, dt_n) else torch.float32]
    for k in KEYS:
        assert r[k] <= tol, f"{name}: {k} relative RMSE {r[k]:.2e} > {tol:.0e} ({r})"
        if tol == TOL[torch.float32]:
            assert r[k] <= 1.05 * r[k + "_plain"] + 1e-7, f"{name}: {k} worse than the plain path ({r})"


def test_interpreted_vig_t_block_fused_equals_plain(interpreted):
    r = interpreted["block"]
    assert {"y", "dx", "attn_norm.weight", "mlp_norm.weight", "attn.g_norm.weight"} <= set(r)
    for k, e in r.items():
        assert e <= 1e-5, f"GLABlock fused vs plain: {k} relative RMSE {e:.2e}"


def test_interpreted_pending_chain_fused_equals_plain_blocks(interpreted):
    r = interpreted["chain"]
    assert {"y", "dx", "blocks.1.attn_norm.weight", "norm.weight"} <= set(r)
    for k, e in r.items():
        assert e <= 1e-5, f"two GLABlocks + norm, forward_pending (fused) vs forward (plain): {k} {e:.2e}"


def test_interpreted_op_compiles_and_passes_opcheck(interpreted):
    r = dict(interpreted["op"])
    assert r.pop("opcheck") == {}
    for k, e in r.items():
        assert e <= 1e-6, f"vig::add_rms_norm compiled vs eager: {k} {e:.2e}"


def test_interpreted_add_norm_under_autocast_writes_the_norm_in_bf16(interpreted):
    """fp32 outputs and grads within 1e-5 of float64, bf16 ones within 5e-3; the linear's weight grad, whose inputs
    both went through bf16, within twice the plain path's error: triton's interpreter rounds fp32 to bf16 by
    truncation (up to 1 ulp, where a GPU rounds to nearest, 1/2 ulp)."""
    r = dict(interpreted["autocast_add_norm"])
    assert (r.pop("n_dtype_fused"), r.pop("n_dtype_plain")) == ("torch.bfloat16", "torch.float32")
    for k in ("s", "dx"):
        assert r[f"{k}_fused"] <= 1e-5, f"add_norm under autocast: {k} relative RMSE {r[f'{k}_fused']:.2e} ({r})"
    for k in ("n", "dy", "dw"):
        assert r[f"{k}_fused"] <= 5e-3, f"add_norm under autocast: {k} relative RMSE {r[f'{k}_fused']:.2e} ({r})"
    assert r["dlin_plain"] <= 5e-3 and r["dlin_fused"] <= 2 * r["dlin_plain"], r


def test_op_import_leaves_kernels_unloaded():
    assert_import_leaves_unloaded(["vig.layers.fused.add_rmsnorm_op", "vig.layers.blocks"],
                                  "vig.layers.fused.add_rmsnorm")


def test_interpreted_compiled_chain_calls_the_op_and_matches_plain(interpreted):
    r = dict(interpreted["chain_compiled"])
    assert r.pop("graph_breaks") == 0
    assert r.pop("op_calls") == 4  # two blocks' mlp norms, the second block's attn norm, the final norm
    assert {"y", "dx", "blocks.1.mlp_norm.weight", "norm.weight"} <= set(r)
    for k, e in r.items():
        assert e <= 1e-5, f"compiled blocks with vig::add_rms_norm vs plain eager: {k} {e:.2e}"


def test_forward_pending_chain_equals_forward_on_cpu():
    from vig.layers import GLABlock
    from vig.layers.blocks import add_norm
    torch.manual_seed(0)
    blocks = [GLABlock(32, 2) for _ in range(2)]
    norm = blocks[0].mlp_norm
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        want = norm(blocks[1](blocks[0](x, (3, 4)), (3, 4)))
        s, pending = x, None
        for blk in blocks:
            s, pending = blk.forward_pending(s, pending, (3, 4))
        assert torch.equal(add_norm(s, pending, norm)[1], want)
        assert torch.equal(s + pending, blocks[1](blocks[0](x, (3, 4)), (3, 4)))


def test_block_keeps_plain_path_and_state_dict_on_cpu():
    from vig.layers import GLABlock
    from vig.layers.norms import rms_norm_reference
    torch.manual_seed(0)
    block = GLABlock(32, 2, drop_path=0.0)
    assert list(block.state_dict()) == [
        "attn_norm.weight", "attn.in_proj.0.weight", "attn.qkv_proj.weight", "attn.gk_proj.0.weight",
        "attn.gk_proj.1.weight", "attn.gk_proj.1.bias", "attn.o_proj.weight", "attn.g_norm.weight",
        "attn.l_norm.weight", "attn.g_proj.weight", "attn.g_proj.bias", "mlp_norm.weight",
        "mlp.gate_proj.weight", "mlp.down_proj.weight"]
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        s = x + block.attn(block.attn_norm(x), (3, 4))
        want = s + block.mlp(rms_norm_reference(s, block.mlp_norm.weight, block.mlp_norm.eps))
        assert torch.equal(block(x, (3, 4)), want)


def test_drop_path_in_training_keeps_the_plain_path(monkeypatch):
    import vig.layers.blocks as blocks
    calls = []
    real = blocks.add_norm
    monkeypatch.setattr(blocks, "add_norm", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    x = torch.randn(2, 12, 32)
    for drop, train, fused in ((0.1, True, False), (0.1, False, True), (0.0, True, True)):
        block = blocks.GLABlock(32, 2, drop_path=drop).train(train)
        calls.clear()
        block(x, (3, 4))
        assert calls == ([block.mlp_norm] if fused else []), (drop, train)


def test_add_rmsnorm_rejects_bad_input():
    from vig.layers.fused.add_rmsnorm_op import add_rms_norm_fused
    with pytest.raises(ValueError, match="one shape"):
        add_rms_norm_fused(torch.randn(2, 8), torch.randn(1, 8), torch.ones(8), 1e-6)
    with pytest.raises(ValueError, match="weight shape"):
        add_rms_norm_fused(torch.randn(2, 8), torch.randn(2, 8), torch.ones(6), 1e-6)
    with pytest.raises(ValueError, match="last dim 20000"):
        add_rms_norm_fused(torch.randn(1, 20000), torch.randn(1, 20000), torch.ones(20000), 1e-6)


@cuda
@pytest.mark.parametrize("name,shape,dt_x,dt_y,strided,used,dt_n", [
    ("bf16", (4, 197, 192), torch.bfloat16, torch.bfloat16, False, "both", None),
    ("bf16_n_only", (4, 197, 384), torch.bfloat16, torch.bfloat16, False, "n_only", None),
    ("fp32_x_bf16_y", (4, 196, 192), torch.float32, torch.bfloat16, False, "both", None),
    ("vig_t_autocast", (64, 196, 192), torch.float32, torch.bfloat16, False, "both", torch.bfloat16),
    ("fp16_strided", (3, 100, 192), torch.float16, torch.float16, True, "both", None),
    ("fp32", (4, 197, 192), torch.float32, torch.float32, False, "both", None),
])
def test_add_rmsnorm_on_cuda(name, shape, dt_x, dt_y, strided, used, dt_n):
    """bf16/fp16: within 5e-3 of float64 and no worse than the plain path; fp32: within 1e-5."""
    from vig.layers.fused.add_rmsnorm_op import add_rms_norm_fused
    gen = torch.Generator().manual_seed(0)
    ins = _inputs(shape, dt_x, dt_y, strided, gen, "cuda", dt_n=dt_n)
    r = _compare(*ins, used, lambda a, b, w: add_rms_norm_fused(a, b, w, 1e-6, dt_n))
    dt = torch.promote_types(dt_x, dt_y)
    assert r["dtypes"] == [str(dt), str(dt_n or dt), str(dt_x), str(dt_y), "torch.float32"]
    tol = 1e-5 if dt_x == dt_y == torch.float32 else 5e-3
    for k in KEYS:
        assert r[k] <= tol and r[k] <= 1.25 * r[k + "_plain"] + 1e-7, f"{name}: {k} ({r})"


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run_cases()))
