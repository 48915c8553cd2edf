"""bigla_packed: q, k, v and the gates read from the two projection outputs, gradients written into tensors of
their shapes (ops/bigla/packed.py).

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the custom op and the eager
autograd.Function against the float64 oracle on the split views, their packed gradients bitwise equal to the five
gradients of bigla's own launch (the kernels only store elsewhere), the seq backward (which copies into the packed
buffers), opcheck and a fullgraph compile. CPU: the torch fallback and argument errors. CUDA: bf16 at ViG-T's
head dims.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton backend runs on CUDA only")
# (name, B, T, H, K, V, env, gate_logit_normalizer)
CASES = [("chunk_T37_k16v32_logits", 1, 37, 2, 16, 32, {"VIG_BIGLA_CHUNK_BWD": "16"}, 16.0),
         ("chunk_T20_k32v64_log_gates", 2, 20, 1, 32, 64, {}, None),
         ("seq_bwd_T17_k16v32", 1, 17, 2, 16, 32, {"VIG_BIGLA_PATH": "seq"}, 16.0),
         # vig::bigla_packed_saved_keys (the default where config.save_key_states applies): the forward's key states
         # saved for the backward
         ("savekeys_T20_k32v64_logits", 2, 20, 1, 32, 64, {"VIG_BIGLA_SAVE_KEY_STATES": "1"}, 16.0)]
INTERPRETER_UNSET_ENV = ("VIG_BIGLA_PATH", "VIG_BIGLA_CHUNK_BWD", "VIG_BIGLA_CHUNK", "VIG_BIGLA_SAVE_KEY_STATES")
NAMES = ("o", "dqkv", "dg")


def _packed_inputs(B, T, H, K, V, normalizer, gen, dtype=torch.float32, device="cpu"):
    qkv = torch.randn(B, T, H * (2 * K + V), generator=gen)
    g = torch.randn(B, T, 2 * H * K, generator=gen) * 2
    if normalizer is None:
        g = F.logsigmoid(g) / 2
    do = torch.randn(B, T, H, V, generator=gen)
    return qkv.to(device, dtype), g.to(device, dtype), do.to(device, dtype)


def _oracle(qkv, g, do, H, K, normalizer):
    from vig.ops.bigla.gates import decays_of
    from vig.ops.bigla.naive import bigla_naive
    from vig.ops.bigla.packed import split_packed
    x, y = (t.detach().double().requires_grad_() for t in (qkv, g))
    q, k, v, gf, gb = split_packed(x, y, H, K)
    o = bigla_naive(q, k, v, *decays_of(gf, gb, normalizer), K ** -0.5)
    return [o, *torch.autograd.grad(o, (x, y), do.double())]


def _run(fn, qkv, g, do):
    x, y = (t.detach().clone().requires_grad_() for t in (qkv, g))
    o = fn(x, y)
    return [o, *torch.autograd.grad(o, (x, y), do)]


def run_cases():
    import os
    from vig.ops.bigla.packed import bigla_packed_op, bigla_packed_saved_keys_op, packed_function, split_packed
    from vig.ops.bigla.triton.launch import bigla_bwd, bigla_fwd
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, B, T, H, K, V, env, normalizer in CASES:
        os.environ.update(env)
        qkv, g, do = _packed_inputs(B, T, H, K, V, normalizer, gen)
        scale = K ** -0.5
        ref = _oracle(qkv, g, do, H, K, normalizer)
        saved = name.startswith("savekeys_")
        if saved:
            op_fn = lambda x, y: bigla_packed_saved_keys_op(x, y, H, K, scale, normalizer)[0]  # noqa: E731
            eager_fn = lambda x, y: packed_function(x, y, H, K, scale, normalizer, True)  # noqa: E731
            _, key_states = bigla_fwd(*split_packed(qkv, g, H, K), scale, normalizer, save_keys=True)
        else:
            op_fn = lambda x, y: bigla_packed_op(x, y, H, K, scale, normalizer)  # noqa: E731
            eager_fn = lambda x, y: packed_function(x, y, H, K, scale, normalizer)  # noqa: E731
            key_states = None
        op = _run(op_fn, qkv, g, do)
        fn = _run(eager_fn, qkv, g, do)
        five = bigla_bwd(do, *split_packed(qkv, g, H, K), scale, normalizer, key_states=key_states)
        errs = {n: rel_rmse(a, r) for n, a, r in zip(NAMES, op, ref)}
        errs.update({n + "_function": rel_rmse(a, r) for n, a, r in zip(NAMES, fn, ref)})
        errs["same_as_five_grads"] = int(torch.equal(op[1], torch.cat([x.flatten(2) for x in five[:3]], -1))
                                         and torch.equal(op[2], torch.cat([x.flatten(2) for x in five[3:]], -1)))
        torch._dynamo.reset()
        compiled = torch.compile(op_fn, backend="aot_eager", fullgraph=True)
        compiled_grads = _run(compiled, qkv, g, do)
        errs.update({n + "_compiled_vs_eager": rel_rmse(c, e) for n, c, e in zip(NAMES, compiled_grads, op)})
        if name.startswith("chunk_T20") or saved:  # opcheck runs the op many times: one case each
            report = torch.library.opcheck(bigla_packed_saved_keys_op if saved else bigla_packed_op,
                                           (qkv.clone().requires_grad_(), g.clone().requires_grad_(), H, K, scale,
                                            normalizer))
            errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
        for k in env:
            os.environ.pop(k)
        out[name] = errs
    out["inductor"] = _inductor_cats()
    return out


def _inductor_cats():
    """Two projections into the op, compiled with inductor (CPU code, kernels under the interpreter): the packed op
    against the op on the split views. Counts the concatenation kernels in the generated code (the split views'
    five gradients are concatenated back into the projections' gradients) and compares the gradients."""
    from torch._inductor.utils import run_and_get_code
    from vig.ops.bigla.packed import bigla_packed_op, split_packed
    H, K, V, C = 2, 16, 32, 64
    torch.manual_seed(0)
    lin_qkv, lin_g = torch.nn.Linear(C, H * (2 * K + V)), torch.nn.Linear(C, 2 * H * K)
    x = torch.randn(2, 20, C)

    def packed(x):
        return bigla_packed_op(lin_qkv(x), lin_g(x), H, K, K ** -0.5, 16.0)

    def split(x):
        return torch.ops.vig.bigla(*split_packed(lin_qkv(x), lin_g(x), H, K), K ** -0.5, "triton", 16.0)
    out, grads = {}, {}
    for fn in (packed, split):
        torch._dynamo.reset()
        compiled = torch.compile(fn, fullgraph=True)
        xx = x.clone().requires_grad_()
        _, codes = run_and_get_code(lambda: compiled(xx).pow(2).mean().backward())
        out[fn.__name__] = sum(code.count("cpp_fused_cat") for code in codes)
        grads[fn.__name__] = [xx.grad] + [p.grad.clone() for p in (*lin_qkv.parameters(), *lin_g.parameters())]
        for p in (*lin_qkv.parameters(), *lin_g.parameters()):
            p.grad = None
    out["grads_packed_vs_split"] = max(rel_rmse(a, b) for a, b in zip(grads["packed"], grads["split"]))
    return out


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_interpreted_packed_op_matches_oracle(interpreted, name):
    r = interpreted[name]
    for n in NAMES:
        assert r[n] <= 1e-5 and r[n + "_function"] <= 1e-5, (n, r)
        assert r[n + "_compiled_vs_eager"] <= 1e-7, (n, r)
    assert r["same_as_five_grads"] == 1, r
    assert r.get("opcheck", {}) == {}, r["opcheck"]


def test_interpreted_inductor_writes_packed_gradients_without_cats(interpreted):
    r = interpreted["inductor"]
    assert r["split"] > 0, r  # the count sees the split views' concatenations...
    assert r["packed"] == 0, r  # ...and the packed op has none
    assert r["grads_packed_vs_split"] <= 1e-5, r


def test_cpu_takes_bigla_on_the_views():
    from vig.ops.bigla import bigla
    from vig.ops.bigla.packed import bigla_packed, split_packed
    qkv, g, do = _packed_inputs(2, 9, 2, 16, 32, 16.0, torch.Generator().manual_seed(1), torch.float64)
    got = _run(lambda x, y: bigla_packed(x, y, 2, 16, gate_logit_normalizer=16.0), qkv, g, do)
    ref = _run(lambda x, y: bigla(*split_packed(x, y, 2, 16), gate_logit_normalizer=16.0), qkv, g, do)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    assert rel_rmse(got[0], _oracle(qkv, g, do, 2, 16, 16.0)[0]) < 1e-10


def test_packed_form_is_on_by_default():
    """Timed faster on an H200 (session 19), so it is no longer opt-in; VIG_FUSED_OFF=bigla_packed turns it off."""
    from vig.layers.fused import OPT_IN
    assert "bigla_packed" not in OPT_IN


def test_mixer_routes_through_the_packed_form_when_enabled(monkeypatch):
    """Where it is enabled (CUDA), ViG's mixer calls bigla_packed (on CPU that takes bigla on the views: same
    numbers)."""
    import vig.layers.bigla_attn as attn
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True).double()
    x = torch.randn(2, 20, 64, dtype=torch.float64)
    plain = mixer(x, (4, 5))
    calls = []
    real = attn.bigla_packed
    monkeypatch.setattr(attn, "bigla_packed", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name: name == "bigla_packed")
    assert torch.equal(mixer(x, (4, 5)), plain) and calls == [1]


@pytest.mark.parametrize("args,match", [
    (((2, 5, 4 * 16 + 2 * 32), (2, 5, 48), 2, 16), r"g must hold 2 \* num_heads \* head_k_dim = 64 gate channels, got 48"),
    (((2, 5, 64 + 3), (2, 5, 32), 2, 8), r"leave 35 for v, which must be a positive multiple of num_heads=2"),
    (((2, 5, 96), (2, 4, 32), 2, 8), r"must share \[B, T\]"),
    (((2, 5, 96), (2, 5, 32, 1), 2, 8), r"g must be a \[B, T, C\] tensor"),
    (((2, 5, 96), (2, 5, 32), 0, 8), r"num_heads and head_k_dim must be >= 1"),
])
def test_packing_errors_name_the_argument(args, match):
    from vig.ops.bigla.packed import bigla_packed
    qkv_shape, g_shape, H, K = args
    with pytest.raises(ValueError, match=match):
        bigla_packed(torch.randn(qkv_shape), torch.randn(g_shape), H, K)


def test_flop_counter_counts_the_packed_op_like_bigla():
    """The packed op and its backward carry bigla's FLOP formula (vig bench / vig info totals on CUDA)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode
    from vig.ops.bigla.flops import bigla_macs
    from vig.ops.bigla.packed import bigla_packed_op
    with FakeTensorMode():
        qkv = torch.randn(2, 196, 3 * (2 * 32 + 64), requires_grad=True)
        g = torch.randn(2, 196, 2 * 3 * 32, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            bigla_packed_op(qkv, g, 3, 32, 0.17, 16.0).sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    fwd = 2 * bigla_macs((2, 196, 3, 32), (2, 196, 3, 64))
    assert counts == {"vig.bigla_packed": fwd, "vig.bigla_packed_backward": 2 * fwd}
    from vig.ops.bigla.packed import bigla_packed_saved_keys_op
    with FakeTensorMode():
        qkv = torch.randn(2, 196, 3 * (2 * 32 + 64), requires_grad=True)
        g = torch.randn(2, 196, 2 * 3 * 32, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            bigla_packed_saved_keys_op(qkv, g, 3, 32, 0.17, 16.0)[0].sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    assert counts == {"vig.bigla_packed_saved_keys": fwd, "vig.bigla_packed_saved_keys_backward": 2 * fwd}


def test_gradient_outputs_must_be_packable_rows():
    from vig.ops.bigla.triton.launch import _grad_row_width
    buf = torch.empty(2, 5, 3 * 32)
    assert _grad_row_width(buf[..., 32:64].unflatten(-1, (2, 16)), "dk") == 96
    with pytest.raises(ValueError, match=r"gradient output dq must be \[B, T, H, D\] rows"):
        _grad_row_width(torch.empty(2, 2, 5, 16).transpose(1, 2), "dq")


@cuda
@pytest.mark.parametrize("normalizer", [16.0, None])
def test_cuda_bf16_matches_oracle(normalizer):
    from vig.ops.bigla.packed import bigla_packed
    qkv, g, do = _packed_inputs(4, 196, 3, 32, 64, normalizer, torch.Generator().manual_seed(2), torch.bfloat16,
                                "cuda")
    got = _run(lambda x, y: bigla_packed(x, y, 3, 32, gate_logit_normalizer=normalizer), qkv, g, do)
    ref = _oracle(qkv, g, do, 3, 32, normalizer)
    errs = {n: rel_rmse(a, r) for n, a, r in zip(NAMES, got, ref)}
    assert all(e <= 5e-3 for e in errs.values()), errs


@cuda
@pytest.mark.parametrize("saved_keys", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_mixer_packed_matches_split_views(compiled, saved_keys, monkeypatch):
    """The ViG mixer with the packed op (the default on CUDA), eager and compiled, against the split views
    (VIG_FUSED_OFF=bigla_packed); with the forward's key states saved (the default here: vig::bigla_packed_saved_keys
    when compiled) and without (VIG_BIGLA_SAVE_KEY_STATES=0: vig::bigla_packed). The split views walk all four
    states either way."""
    from vig.layers.bigla_attn import BiGLAttention
    torch.manual_seed(0)
    mixer = BiGLAttention(192, 3, use_act_in_conv=True, use_out_act=True).cuda()
    x = torch.randn(4, 196, 192, device="cuda")

    def grads():
        mixer.zero_grad()
        xx = x.clone().requires_grad_()
        fn = torch.compile(mixer, fullgraph=True) if compiled else mixer
        torch._dynamo.reset()
        y = fn(xx, (14, 14))
        y.pow(2).mean().backward()
        return [y, xx.grad] + [p.grad for p in mixer.parameters()]
    monkeypatch.setenv("VIG_BIGLA_SAVE_KEY_STATES", "1" if saved_keys else "0")
    packed = grads()
    monkeypatch.setenv("VIG_BIGLA_SAVE_KEY_STATES", "0")
    monkeypatch.setenv("VIG_FUSED_OFF", "bigla_packed")
    split = grads()
    errs = [rel_rmse(a, b) for a, b in zip(packed, split)]
    assert max(errs) <= 1e-5, errs


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run_cases()))
