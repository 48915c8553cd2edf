"""bigla_packed_low_rank: the gate logits given as low @ W^T + b (the mixer's gk_proj second layer) and formed inside
the seq forward (ops/bigla/low_rank.py, triton/_common.load_low_rank_gate), for inference.

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the op against the float64 oracle on the
materialized logits (fp32 <= 1e-5; bf16 <= 5e-3 and no worse than the same launch on materialized bf16 logits), low
as a column slice of a wider buffer, the materializing fallback for long sequences, opcheck, and a ViG mixer's
inference compiled by inductor with the route forced (no addmm left for the second layer). CPU: the route's rule,
the torch fallback, errors, the FLOP formula. CUDA: bf16 / fp16 / fp32 at ViG-T's and ViG-S's head counts.
"""
import json

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton backend runs on CUDA only")
# (name, B, T, H, K, V, R, dtype, env)
SEQ16 = {"VIG_BIGLA_BT": "16", "VIG_BIGLA_FWD_TILE": "0"}
CASES = [("fp32_T37_k32v64", 2, 37, 2, 32, 64, 16, torch.float32, SEQ16),
         ("fp32_T5_k16v32_r32", 1, 5, 1, 16, 32, 32, torch.float32, SEQ16),
         ("bf16_T37_k32v64", 1, 37, 3, 32, 64, 16, torch.bfloat16, SEQ16),
         ("fp32_T300_k16v32_materialized", 1, 300, 1, 16, 32, 16, torch.float32, {})]
INTERPRETER_UNSET_ENV = ("VIG_BIGLA_BT", "VIG_BIGLA_FWD_TILE", "VIG_BIGLA_PATH", "VIG_FUSED_OFF")
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _inputs(B, T, H, K, V, R, dtype, gen, device="cpu"):
    """qkv [B, T, H (2K + V)], low as a column slice of a wider [B, T, R + 8] buffer (the merged GEMM's layout),
    weight [2 H K, R] and bias in fp32 (parameters)."""
    qkv = torch.randn(B, T, H * (2 * K + V), generator=gen).to(device, dtype)
    low = torch.randn(B, T, R + 8, generator=gen).to(device, dtype)[..., 3:3 + R]
    weight = (torch.randn(2 * H * K, R, generator=gen) * R ** -0.5).to(device)
    bias = torch.randn(2 * H * K, generator=gen).to(device)
    return qkv, low, weight, bias


def _oracle(qkv, low, weight, bias, H, K, normalizer=16.0):
    """float64 bigla on the logits that autocast's linear would see: low and weight in low's dtype."""
    from vig.ops.bigla.gates import decays_of
    from vig.ops.bigla.naive import bigla_naive
    from vig.ops.bigla.packed import split_packed
    g = low.double() @ weight.to(low.dtype).double().t() + bias.double()
    q, k, v, gf, gb = split_packed(qkv.double(), g, H, K)
    return bigla_naive(q, k, v, *decays_of(gf, gb, normalizer), K ** -0.5)


def run_cases():
    import os
    from vig.ops.bigla.low_rank import bigla_packed_low_rank_op, low_rank_logits
    from vig.ops.bigla.packed import bigla_packed_op, split_packed
    from vig.ops.bigla.triton.launch import low_rank_walk
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, B, T, H, K, V, R, dtype, env in CASES:
        os.environ.update(env)
        qkv, low, weight, bias = _inputs(B, T, H, K, V, R, dtype, gen)
        args = (H, K, K ** -0.5, 16.0)
        ref = _oracle(qkv, low, weight, bias, H, K)
        q, _, v, _, _ = split_packed(qkv, qkv[..., :2 * H * K], H, K)
        with torch.no_grad():
            got = bigla_packed_low_rank_op(qkv, low, weight, bias, *args)
            materialized = bigla_packed_op(qkv, low_rank_logits(low, weight, bias), *args)
        out[name] = {"o": _rel(got, ref), "materialized": _rel(materialized, ref),
                     "walk": int(low_rank_walk(q, v, R))}
        if name == "fp32_T37_k32v64":
            report = torch.library.opcheck(bigla_packed_low_rank_op, (qkv, low, weight, bias, *args))
            out[name]["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
        for k in env:
            os.environ.pop(k)
    out["mixer"] = {"low_rank": _compiled_mixer(True), "materialized": _compiled_mixer(False)}
    return out


def _compiled_mixer(low_rank):
    """A ViG-T-like mixer's inference compiled by inductor on CPU tensors with the packed op, the merged projections
    and (low_rank) the low-rank route forced, against its plain eager path; whether an addmm (the gate projection's
    second layer, the graph's only biased GEMM) is left in inductor's code."""
    import vig.layers.bigla_attn as attn
    from torch._inductor.utils import run_and_get_code
    from vig.ops.bigla.low_rank import bigla_packed_low_rank_op
    from vig.ops.bigla.packed import bigla_packed_op
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True)
    with torch.no_grad():
        mixer.gk_proj[1].bias.normal_()
    x = torch.randn(2, 20, 64)
    saved = (attn.fused_op_enabled, attn.merges_projections, attn.logits_into_op, attn.low_rank_gates_into_op,
             attn.bigla_packed, attn.bigla_packed_low_rank)
    try:
        with torch.no_grad():
            plain = mixer(x, (4, 5))
            attn.fused_op_enabled = lambda t, name="": name == "bigla_packed"
            attn.merges_projections = lambda mixer, xs: True
            attn.logits_into_op = lambda t: True
            attn.low_rank_gates_into_op = lambda mixer, t: low_rank
            # the ops themselves: on CPU the wrappers take the torch path
            attn.bigla_packed = lambda qkv, g, h, dk, gate_logit_normalizer=None: bigla_packed_op(
                qkv, g, h, dk, dk ** -0.5, gate_logit_normalizer)
            attn.bigla_packed_low_rank = lambda qkv, low, w, b, h, dk, gate_logit_normalizer: \
                bigla_packed_low_rank_op(qkv, low, w, b, h, dk, dk ** -0.5, gate_logit_normalizer)
            torch._dynamo.reset()
            fused, codes = run_and_get_code(torch.compile(mixer, fullgraph=True), x, (4, 5))
    finally:
        (attn.fused_op_enabled, attn.merges_projections, attn.logits_into_op, attn.low_rank_gates_into_op,
         attn.bigla_packed, attn.bigla_packed_low_rank) = saved
    return {"y": _rel(fused, plain), "op_in_code": int(any("vig.bigla_packed_low_rank" in c for c in codes)),
            "addmm": int(any("addmm" in c for c in codes))}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreted_low_rank_gates_match_oracle(interpreted, case):
    name, dtype = case[0], case[7]
    r = interpreted[name]
    assert r["walk"] == (name != "fp32_T300_k16v32_materialized"), r  # long sequences materialize the logits
    assert r["o"] <= TOL[dtype], r
    # the walk on materialized logits, rounded to the input dtype, is the bar: forming them in fp32 is no worse
    assert r["o"] <= 1.1 * r["materialized"] + 1e-6, r
    assert r.get("opcheck", {}) == {}, r["opcheck"]


def test_interpreted_compiled_mixer_drops_the_second_gate_layer(interpreted):
    r = interpreted["mixer"]
    assert r["materialized"]["addmm"] == 1 and r["materialized"]["op_in_code"] == 0, r  # the check sees the addmm
    assert r["low_rank"]["addmm"] == 0 and r["low_rank"]["op_in_code"] == 1, r
    assert r["low_rank"]["y"] <= 1e-5 and r["materialized"]["y"] <= 1e-5, r


def test_cpu_takes_bigla_packed_on_materialized_logits():
    from vig.ops.bigla.low_rank import bigla_packed_low_rank
    qkv, low, weight, bias = _inputs(2, 9, 2, 16, 32, 16, torch.float32, torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = bigla_packed_low_rank(qkv, low, weight, bias, 2, 16, gate_logit_normalizer=16.0)
    assert _rel(got, _oracle(qkv, low, weight, bias, 2, 16)) <= 1e-5


def test_mixer_low_rank_route_matches_plain_on_cpu(monkeypatch):
    """The mixer's plumbing: with the merge and the route forced (the op's CPU fallback), the same output."""
    import vig.layers.bigla_attn as attn
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True)
    with torch.no_grad():
        mixer.gk_proj[1].bias.normal_()
        x = torch.randn(2, 12, 64)
        plain = mixer(x, (3, 4))
        calls = []
        real = attn.bigla_packed_low_rank
        monkeypatch.setattr(attn, "bigla_packed_low_rank", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
        monkeypatch.setattr(attn, "fused_op_enabled", lambda t, name="": name == "bigla_packed")
        monkeypatch.setattr(attn, "merges_projections", lambda mixer, xs: True)
        monkeypatch.setattr(attn, "logits_into_op", lambda t: True)
        monkeypatch.setattr(attn, "low_rank_gates_into_op", lambda mixer, t: True)
        got = mixer(x, (3, 4))
    assert calls == [torch.Size([2, 12, 16])]  # the 16-wide rows went into the op
    assert _rel(got, plain) <= 1e-5


def test_low_rank_route_rule(monkeypatch):
    import vig.layers.bigla_attn as attn
    mixer = attn.BiGLAttention(64, 2)
    x = torch.randn(2, 3)
    with torch.no_grad():
        assert not attn.low_rank_gates_into_op(mixer, x)  # CPU
        monkeypatch.setattr(attn, "merges_projections", lambda m, t: True)
        monkeypatch.setattr(attn, "rewrite_enabled", lambda t, name: name != "gate_low_rank")
        assert not attn.low_rank_gates_into_op(mixer, x)  # VIG_FUSED_OFF=gate_low_rank
        monkeypatch.setattr(attn, "rewrite_enabled", lambda t, name: True)
        assert attn.low_rank_gates_into_op(mixer, x)
        monkeypatch.setattr(attn, "merges_projections", lambda m, t: False)
        assert not attn.low_rank_gates_into_op(mixer, x)  # training, or the merge off


def _bad(qkv, low, weight, bias, **kw):
    from vig.ops.bigla.low_rank import bigla_packed_low_rank
    return bigla_packed_low_rank(qkv, low, weight, bias, 2, 16, **{"gate_logit_normalizer": 16.0, **kw})


def test_errors_name_the_argument():
    qkv, low, weight, bias = _inputs(1, 5, 2, 16, 32, 16, torch.float32, torch.Generator().manual_seed(2))
    with torch.no_grad():
        with pytest.raises(ValueError, match="gate_logit_normalizer is required"):
            _bad(qkv, low, weight, bias, gate_logit_normalizer=None)
        with pytest.raises(ValueError, match=r"weight must be \[2 \* num_heads \* head_k_dim, R\] = \[64, 16\]"):
            _bad(qkv, low, weight[:, :8], bias)
        with pytest.raises(ValueError, match=r"bias must be \[64\]"):
            _bad(qkv, low, weight, bias[:32])
        with pytest.raises(ValueError, match=r"low must be a \[B, T, R\] tensor"):
            _bad(qkv, low[0], weight, bias)
        with pytest.raises(ValueError, match=r"qkv .* and g .* must share \[B, T\]"):
            _bad(qkv, low[:, :4], weight, bias)
        with pytest.raises(TypeError, match="bias must be a torch.Tensor"):
            _bad(qkv, low, weight, None)
    with pytest.raises(RuntimeError, match="forward only"):
        _bad(qkv, low, weight.requires_grad_(), bias)
    with torch.no_grad():  # no gradient recorded: allowed
        _bad(qkv, low, weight, bias)


def test_flop_counter_adds_the_gate_layer_to_bigla():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode
    from vig.ops.bigla.flops import bigla_macs
    from vig.ops.bigla.low_rank import bigla_packed_low_rank_op
    with FakeTensorMode():
        qkv, low = torch.randn(2, 196, 3 * (2 * 32 + 64)), torch.randn(2, 196, 16)
        weight, bias = torch.randn(2 * 3 * 32, 16), torch.randn(2 * 3 * 32)
        with FlopCounterMode(display=False) as counter:
            bigla_packed_low_rank_op(qkv, low, weight, bias, 3, 32, 0.17, 16.0)
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    gate_layer = 2 * 2 * 196 * 16 * 192
    assert counts == {"vig.bigla_packed_low_rank": 2 * bigla_macs((2, 196, 3, 32), (2, 196, 3, 64)) + gate_layer}


@cuda
@pytest.mark.parametrize("H", [3, 6])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cuda_matches_oracle(dtype, H):
    """ViG-T's / ViG-S's mixer shapes at T = 196 (the walk forms the logits), against float64 on the same
    factors; fp16 at bf16's tolerance, and no worse than the op on materialized logits."""
    from vig.ops.bigla.low_rank import bigla_packed_low_rank, low_rank_logits
    from vig.ops.bigla.packed import bigla_packed
    qkv, low, weight, bias = _inputs(8, 196, H, 32, 64, 16, dtype, torch.Generator().manual_seed(3), "cuda")
    with torch.no_grad():
        got = bigla_packed_low_rank(qkv, low, weight, bias, H, 32, gate_logit_normalizer=16.0)
        materialized = bigla_packed(qkv, low_rank_logits(low, weight, bias), H, 32, gate_logit_normalizer=16.0)
    ref = _oracle(qkv, low, weight, bias, H, 32)
    e, e_m = _rel(got, ref), _rel(materialized, ref)
    assert e <= TOL.get(dtype, 5e-3) and e <= 1.1 * e_m + 1e-6, (e, e_m)


if __name__ == "__main__":
    print(json.dumps(run_cases()))
