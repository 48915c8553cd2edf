"""The fused 2D gate as the custom op vig::gated_norm_blend (what torch.compile calls on CUDA).

CPU: the kernels run under TRITON_INTERPRET=1 in one child process (this file run as a script):
the op's output and five grads against float64, the op compiled with fullgraph against the op eager,
torch.library.opcheck (schema, fake tensors, autograd registration, AOT dispatch), and a compiled
ViG-T mixer whose graph holds the op, against the plain path. CUDA: bf16 against float64.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from fused_checks import assert_compiled_matches_plain, assert_import_leaves_unloaded
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA only")
# (name, [B, N, H, D], dtype, out_silu)
CASES = [("fp32_silu", (2, 5, 3, 64), torch.float32, True), ("fp32_plain", (1, 7, 2, 32), torch.float32, False),
         ("bf16_silu", (2, 6, 3, 64), torch.bfloat16, True)]
KEYS = ("y", "do", "dloc", "dgp", "dwg", "dwl")
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def _oracle(o, loc, gp, wg, wl, out_silu):
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    y = torch.lerp(rms(loc, wl), rms(o, wg), torch.sigmoid(gp))
    return F.silu(y) if out_silu else y


def _inputs(shape, dtype, gen, device="cpu"):
    o, loc, gp = (torch.randn(*shape, generator=gen) * s for s in (1.0, 0.7, 2.0))
    wg, wl = 1 + 0.3 * torch.randn(2, shape[-1], generator=gen)
    dy = torch.randn(*shape, generator=gen)
    ins = [o.to(device, dtype), loc.to(device, dtype), gp.to(device, dtype), wg.to(device), wl.to(device)]
    return [t.requires_grad_() for t in ins], dy.to(device, dtype)


def _run(fn, ins, dy, out_silu):
    y = fn(*ins, out_silu)
    return [y, *torch.autograd.grad(y, ins, dy.to(y.dtype))]


def _op_vs_oracle(ins, dy, out_silu):
    from vig.layers.fused.gate_op import gated_norm_blend
    got = _run(lambda *a: gated_norm_blend(*a[:5], 1e-6, a[5]), ins, dy, out_silu)
    ref = _run(_oracle, [t.detach().double().requires_grad_() for t in ins], dy, out_silu)
    return got, {k: _rel(g, r) for k, g, r in zip(KEYS, got, ref)}


def run_cases():
    from vig.layers.fused.gate_op import gated_norm_blend, gated_norm_blend_op
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, shape, dtype, out_silu in CASES:
        ins, dy = _inputs(shape, dtype, gen)
        eager, errs = _op_vs_oracle(ins, dy, out_silu)
        torch._dynamo.reset()
        compiled_fn = torch.compile(lambda *a: gated_norm_blend(*a[:5], 1e-6, a[5]), backend="aot_eager",
                                    fullgraph=True)
        compiled = _run(compiled_fn, ins, dy, out_silu)
        errs.update({k + "_compiled_vs_eager": _rel(c, e) for k, c, e in zip(KEYS, compiled, eager)})
        report = torch.library.opcheck(gated_norm_blend_op, (*ins, 1e-6, out_silu))
        errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
        out[name] = errs
    out["bias"] = _op_with_bias(gen)
    out["persistent_rows480"] = _persistent_backward(gen)
    out["mixer"] = _compiled_mixer()
    out["mixer_channel_first"] = _compiled_mixer(channel_first=True)
    out["inductor_4d_buffers"] = _inductor_4d_buffers()
    out["merged_inference"] = _compiled_merged_inference()
    out["wide_stack_copies"] = {mode: _wide_stack_slice_copies(mode == "padded") for mode in ("padded", "unpadded")}
    return out


def _op_with_bias(gen):
    """The op with g_proj's bias (merged inference passes it; with gradients the backward adds it to gp itself):
    output and six grads against float64, and opcheck."""
    from vig.layers.fused.gate_op import gated_norm_blend, gated_norm_blend_op
    ins, dy = _inputs((2, 5, 3, 64), torch.float32, gen)
    bias = (0.5 * torch.randn(3 * 64, generator=gen)).requires_grad_()
    got = _run(lambda *a: gated_norm_blend(*a[:5], 1e-6, a[6], a[5]), [*ins, bias], dy, True)
    ref_in = [t.detach().double().requires_grad_() for t in (*ins, bias)]
    ref = _run(lambda o, loc, gp, wg, wl, b, silu: _oracle(o, loc, gp + b.view(3, 64), wg, wl, silu), ref_in, dy,
               True)
    errs = {k: _rel(g, r) for k, g, r in zip(KEYS + ("dbias",), got, ref)}
    heads = [t.flatten(0, 1) for t in ins[:3]]
    report = torch.library.opcheck(gated_norm_blend_op, (*heads, *ins[3:], 1e-6, True, bias))
    errs["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
    return errs


def _persistent_backward(gen):
    """The backward's persistent grid (gate.BWD_PROGRAMS_PER_SM; off CUDA 4 "SMs", so 12 programs) on 480 rows of 64:
    15 row blocks, so some programs walk two and sum both into their weight-grad registers."""
    from unittest import mock

    import vig.layers.fused.gate as gate
    ins, dy = _inputs((4, 40, 3, 64), torch.float32, gen)
    with mock.patch.object(gate, "BWD_PROGRAMS_PER_SM", 3):
        _, errs = _op_vs_oracle(ins, dy, True)
    return errs


def _compiled_mixer(channel_first=False):
    """A ViG-T mixer (channel_first: a ViG-H GLA2D) compiled with the op path forced on CPU tensors, against
    its plain eager path."""
    import vig.layers.bigla_attn as attn
    from vig.layers.gla2d import GLA2D
    torch.manual_seed(0)
    mixer = GLA2D(64, 2) if channel_first else attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True)
    with torch.no_grad():
        mixer.g_norm.weight.add_(0.2 * torch.randn(32))
        mixer.l_norm.weight.add_(0.2 * torch.randn(32))
    x = torch.randn(2, 64, 4, 5) if channel_first else torch.randn(2, 20, 64)
    args = () if channel_first else ((4, 5),)

    def run(fn):
        mixer.zero_grad()
        xx = x.clone().requires_grad_()
        y = fn(xx, *args)
        y.pow(2).mean().backward()
        return [y, xx.grad] + [p.grad for p in mixer.parameters()]
    plain = run(mixer)
    real = attn.fused_op_enabled
    attn.fused_op_enabled = lambda t, name="": name in ("gate_op", "gate_silu")
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm
    torch._dynamo.reset()
    fused = run(torch.compile(mixer, backend=backend, fullgraph=True))
    names = ["y", "dx"] + [n for n, _ in mixer.named_parameters()]
    errs = {n: _rel(f, p) for n, f, p in zip(names, fused, plain)}
    errs["op_in_graph"] = int(any("vig.gated_norm_blend" in g for g in graphs))
    attn.fused_op_enabled = real
    return errs


def _compiled_merged_inference():
    """A ViG-T mixer's inference compiled by inductor with the op and the merged projections forced on CPU
    tensors (g_proj's output reaches the op as a column slice of the merged GEMM's), against its plain eager path;
    "gp_in_place": 1 when inductor hands the op that slice itself ([tokens, 2, 32] at the stack's row stride 208),
    not a copy."""
    import vig.layers.bigla_attn as attn
    from torch._inductor.utils import run_and_get_code
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True)
    with torch.no_grad():
        mixer.g_proj.bias.normal_()
    x = torch.randn(2, 20, 64)
    real_op, real_merge = attn.fused_op_enabled, attn.merges_projections
    attn.fused_op_enabled = lambda t, name="": name in ("gate_op", "gate_silu")
    try:
        with torch.no_grad():
            plain = mixer(x, (4, 5))
            attn.merges_projections = lambda mixer, xs: True
            torch._dynamo.reset()
            compiled = torch.compile(mixer, fullgraph=True)
            fused, codes = run_and_get_code(compiled, x, (4, 5))
    finally:
        attn.fused_op_enabled, attn.merges_projections = real_op, real_merge
    return {"y": _rel(fused, plain), "op_in_graph": int(any("vig.gated_norm_blend" in c for c in codes)),
            "merged_gemm": int(any("(208, 64)" in c for c in codes)),
            "gp_in_place": int(any("2, 32), (208, 32, 1), 144)" in c for c in codes))}


def _wide_stack_slice_copies(padded):
    """Kernels inductor writes to copy a slice of the merged GEMM's output for the custom ops (bigla_packed, the gate),
    in a ViG-S-sized mixer's compiled bf16 inference (a stack of 768 + 16 + 384 = 1,168 columns), with inductor's
    GPU stride padding switched on for CPU. padded=False: without stack_width's zero rows (1,168 is padded to 1,216
    by inductor, and the slices copied back to eager's strides, as on an H100 in session 35)."""
    import vig.layers.bigla_attn as attn
    from torch._inductor.utils import run_and_get_code
    from vig.ops.bigla.packed import bigla_packed_op
    torch.manual_seed(0)
    mixer = attn.BiGLAttention(384, 6)
    x = torch.randn(1, 12, 384)
    saved = attn.fused_op_enabled, attn.merges_projections, attn.bigla_packed, attn.stack_width, attn.logits_into_op
    attn.fused_op_enabled = lambda t, name="": name in ("gate_op", "bigla_packed")
    attn.merges_projections = lambda mixer, xs: True
    attn.logits_into_op = lambda t: True
    # the packed op itself: on CPU bigla_packed() takes the views through bigla()
    attn.bigla_packed = lambda qkv, g, h, dk, gate_logit_normalizer=None: bigla_packed_op(
        qkv, g, h, dk, dk ** -0.5, gate_logit_normalizer)
    if not padded:
        attn.stack_width = lambda width: width
    try:
        torch._dynamo.reset()
        compiled = torch.compile(mixer, fullgraph=True)
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16), \
                torch._inductor.config.patch(disable_padding_cpu=False, comprehensive_padding=True):
            _, codes = run_and_get_code(compiled, x, (3, 4))
    finally:
        (attn.fused_op_enabled, attn.merges_projections, attn.bigla_packed, attn.stack_width,
         attn.logits_into_op) = saved
    calls = [line for c in codes for line in c.splitlines() if "split_with_sizes" in line and "cpp_fused" in line
             and "(" in line and "def " not in line and "async_compile" not in line and "=" not in line]
    return len(calls)


def _inductor_4d_buffers():
    """Buffers of the op inputs' [B, N, H, D] shape that inductor allocates in the compiled training graphs of three
    chained ViG-T mixers, with inductor's layout optimisation forced on (its heuristics turn it on for ViG models,
    on the GPU too). The op's 2D views need none; 4D inputs were copied into a channels-last layout to be saved,
    and back for each op call (ViG-T on the GPU: three copies per block each way, every block but the last)."""
    import vig.layers.bigla_attn as attn
    from torch._inductor.utils import run_and_get_code
    torch.manual_seed(0)
    mixers = torch.nn.ModuleList(attn.BiGLAttention(64, 2, use_act_in_conv=True, use_out_act=True) for _ in range(3))

    def blocks(x):
        for m in mixers:
            x = x + m(x, (4, 5))
        return x
    x = torch.randn(2, 20, 64, requires_grad=True)
    real = attn.fused_op_enabled
    attn.fused_op_enabled = lambda t, name="": name in ("gate_op", "gate_silu")
    try:
        torch._dynamo.reset()
        compiled = torch.compile(blocks, fullgraph=True)
        with torch._inductor.config.patch(force_layout_optimization=True):
            _, codes = run_and_get_code(lambda: compiled(x).pow(2).mean().backward())
    finally:
        attn.fused_op_enabled = real
    assert any("vig.gated_norm_blend" in c for c in codes), "the op is not in the compiled graphs"
    return sum(c.count("empty_strided_cpu((2, 20, 2, 32)") for c in codes)


@pytest.mark.parametrize("name,dtype", [(c[0], c[2]) for c in CASES])
def test_interpreted_op_matches_float64_and_compiles(interpreted, name, dtype):
    r = interpreted[name]
    for k in KEYS:
        assert r[k] <= TOL[dtype], f"{name}: {k} relative RMSE {r[k]:.2e} > {TOL[dtype]:.0e} ({r})"
        assert r[k + "_compiled_vs_eager"] <= 1e-6, f"{name}: compiled {k} differs from eager ({r})"
    assert r["opcheck"] == {}, r["opcheck"]


def test_interpreted_persistent_backward_matches_float64(interpreted):
    r = interpreted["persistent_rows480"]
    for k in KEYS:
        assert r[k] <= TOL[torch.float32], f"persistent backward: {k} relative RMSE {r[k]:.2e} ({r})"


def test_interpreted_op_with_gate_bias_matches_float64(interpreted):
    r = dict(interpreted["bias"])
    assert r.pop("opcheck") == {}
    assert set(r) == set(KEYS) | {"dbias"}
    assert all(e <= TOL[torch.float32] for e in r.values()), r


@pytest.mark.parametrize("mixer,op_used", [("mixer", 1), ("mixer_channel_first", 0)])
def test_interpreted_compiled_mixer_matches_plain(interpreted, mixer, op_used):
    """Channel-last (ViG) gate inputs go through the op; ViG-H's channel-strided views stay with inductor."""
    assert_compiled_matches_plain(interpreted[mixer], op_used, mixer)


def test_interpreted_compiled_merged_inference_matches_plain(interpreted):
    r = dict(interpreted["merged_inference"])
    assert r.pop("merged_gemm") == 1, "no [208, 64] weight stack (qkv 128 + low rank 16 + g_proj 64 rows) in the code"
    assert r.pop("gp_in_place") == 1, "the op got a copy of g_proj's columns, not the slice"
    assert_compiled_matches_plain(r, 1, "merged inference")


def test_interpreted_wide_merged_stack_reaches_the_ops_uncopied(interpreted):
    """With stack_width's padding, inductor hands bigla_packed and the gate their slices of ViG-S's merged GEMM in
    place; without it, it copies both (the check can fail: that is what it counted on the H100)."""
    assert interpreted["wide_stack_copies"] == {"padded": 0, "unpadded": 2}, interpreted["wide_stack_copies"]


def test_interpreted_inductor_keeps_op_inputs_in_place(interpreted):
    """No [B, N, H, D] copies around the op in inductor's code (each was a full pass over memory per block)."""
    assert interpreted["inductor_4d_buffers"] == 0, interpreted["inductor_4d_buffers"]


def test_registering_the_op_loads_no_kernel():
    # (torch.utils.flop_counter imports triton itself where it is installed; our kernels stay unloaded)
    assert_import_leaves_unloaded(("vig.layers.fused.gate_op", "vig.layers.bigla_attn"), "vig.layers.fused.gate")


def test_gate_backward_setting_is_checked():
    pytest.importorskip("triton")
    from vig.layers.fused.gate import _bwd_setting
    assert _bwd_setting("1024,3") == (1024, 3)
    for bad in ("1024", "1000,3", "2048,-1", "a,b"):
        with pytest.raises(ValueError, match="VIG_GATE_BWD must be 'tile,programs_per_sm'"):
            _bwd_setting(bad)


def test_op_checks_its_arguments():
    from vig.layers.fused.gate_op import gated_norm_blend
    o = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"^gated_norm_blend: o .* must have one shape"):
        gated_norm_blend(o, o, o[:, :2], torch.ones(8), torch.ones(8), 1e-6)
    with pytest.raises(ValueError, match=r"must be \(8,\)"):
        gated_norm_blend(o, o, o, torch.ones(4), torch.ones(8), 1e-6)


@cuda
@pytest.mark.parametrize("out_silu", [True, False])
@pytest.mark.parametrize("batch", [4, 256])  # the persistent backward's programs own one block at 4, several at 256
def test_op_on_cuda_bf16_matches_float64(out_silu, batch):
    ins, dy = _inputs((batch, 196, 3, 64), torch.bfloat16, torch.Generator().manual_seed(1), "cuda")
    _, errs = _op_vs_oracle(ins, dy, out_silu)
    assert all(e <= 5e-3 for e in errs.values()), errs


if __name__ == "__main__":
    torch.set_num_threads(1)  # the child of one pytest-xdist worker: one core
    print(json.dumps(run_cases()))
