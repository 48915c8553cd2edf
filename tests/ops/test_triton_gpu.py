"""The fused Triton kernels on a GPU at the design's full shape list, against the float64 oracle.

Tolerances (bigla.md): fp32 relative RMSE <= 1e-5, bf16/fp16 <= 5e-3, output and all five grads.
"""
import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse

from vig.ops.bigla import bigla
from vig.ops.bigla.gates import decays_of
from vig.ops.bigla.naive import bigla_naive

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TS = (1, 2, 15, 16, 17, 63, 64, 65, 196, 197, 256, 1000, 3136)
KVS = ((16, 32), (32, 64), (64, 64), (128, 128))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOL = {"fp32": 1e-5, "bf16": 5e-3, "fp16": 5e-3}
NAMES = ("o", "dq", "dk", "dv", "dg_fwd", "dg_bwd")


def _inputs(B, T, H, K, V, dtype, strided, g_fp32, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    if strided:
        qkv = torch.randn(B, T, H, 2 * K + V, device="cuda", generator=gen).to(dtype)
        q, k, v = qkv[..., :K], qkv[..., K:2 * K], qkv[..., 2 * K:]
        gg = F.logsigmoid(torch.randn(B, T, 2, H, K, device="cuda", generator=gen)) / 16
        gf, gb = gg[:, :, 0], gg[:, :, 1]
    else:
        q, k = torch.randn(2, B, T, H, K, device="cuda", generator=gen).to(dtype)
        v = torch.randn(B, T, H, V, device="cuda", generator=gen).to(dtype)
        gf, gb = F.logsigmoid(torch.randn(2, B, T, H, K, device="cuda", generator=gen) * 2) / 4
    if not g_fp32:
        gf, gb = gf.to(dtype), gb.to(dtype)
    do = torch.randn(B, T, H, V, device="cuda", generator=gen).to(dtype)
    return [x.requires_grad_() for x in (q, k, v, gf, gb)], do


def _oracle(xs, do, gate_logit_normalizer=None):
    """The float64 oracle's output and five grads (with a normalizer the gates are logits: the oracle takes
    logsigmoid(x) / n in float64 first)."""
    ref_in = [x.detach().double().requires_grad_() for x in xs]
    ref = bigla_naive(*ref_in[:3], *decays_of(*ref_in[3:], gate_logit_normalizer))
    return (ref, *torch.autograd.grad(ref, ref_in, do.double()))


def _errors_vs_oracle(xs, do, gate_logit_normalizer=None, refs=None):
    """Relative RMSE of the Triton output and five grads against the float64 oracle (refs: _oracle's, when one
    oracle run serves several settings)."""
    refs = refs or _oracle(xs, do, gate_logit_normalizer)
    o = bigla(*xs, backend="triton", gate_logit_normalizer=gate_logit_normalizer)
    grads = torch.autograd.grad(o, xs, do)
    errs = {n: rel_rmse(a, b) for n, a, b in zip(NAMES, (o, *grads), refs)}
    return errs, o, grads


def _assert_matches_oracle(monkeypatch, env, B, T, K, V, dtype, strided, seed):
    """Kernel settings `env`, then the op's output and five grads within the dtype's tolerance."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    xs, do = _inputs(B, T, 2, K, V, DTYPES[dtype], strided, dtype == "fp32", seed)
    errs, _, _ = _errors_vs_oracle(xs, do)
    assert all(e <= TOL[dtype] for e in errs.values()), errs


def _cases(kvs=KVS, ts=TS, prefix=""):  # one xdist group per kernel specialisation: a worker compiles its own
    for K, V in kvs:
        for dtype in DTYPES:
            for T in ts:
                yield pytest.param(T, K, V, dtype, id=f"{prefix}T{T}-K{K}-V{V}-{dtype}",
                                   marks=pytest.mark.xdist_group(f"{prefix}{K}-{V}-{dtype}"))


@cuda
@pytest.mark.parametrize("T,K,V,dtype", list(_cases()))
def test_triton_matches_oracle(T, K, V, dtype):
    B, H = (2, 2) if T <= 256 else (1, 2)
    strided = (T + K) % 2 == 1
    xs, do = _inputs(B, T, H, K, V, DTYPES[dtype], strided, g_fp32=(dtype == "fp32"), seed=T * 131 + K)
    errs, o, grads = _errors_vs_oracle(xs, do)
    assert o.dtype == xs[0].dtype and [g.dtype for g in grads] == [x.dtype for x in xs]
    bad = {n: e for n, e in errs.items() if not e <= TOL[dtype]}
    assert not bad, f"T={T} K={K} V={V} {dtype}: {errs}"


LOGIT_TS = (1, 17, 65, 196, 197, 1000, 3136)
LOGIT_KVS = ((16, 32), (32, 64), (128, 128))  # (128, 128): the seq backward, chain rule on the host


@cuda
@pytest.mark.parametrize("T,K,V,dtype", list(_cases(LOGIT_KVS, LOGIT_TS, "logits-")))
def test_gate_logits_match_oracle(T, K, V, dtype):
    """gate_logit_normalizer=16 with logits in the input dtype, as the models call it (in bf16 both tails:
    logits of +-30 too); the oracle applies logsigmoid(x) / 16 in float64 first."""
    B, H = (2, 2) if T <= 256 else (1, 2)
    strided = T % 2 == 1
    xs, do = _inputs(B, T, H, K, V, DTYPES[dtype], strided, g_fp32=True, seed=T * 17 + K)
    gen = torch.Generator(device="cuda").manual_seed(T)
    x = torch.randn(B, T, 2, H, K, device="cuda", generator=gen) * 2
    x[:, ::7, 0, :, 0], x[:, 3::11, 1, :, -1] = 30.0, -30.0
    x = x.to(DTYPES[dtype])
    xf, xb = x[:, :, 0], x[:, :, 1]  # strided: halves of one gate projection, read in place
    if not strided:
        xf, xb = xf.contiguous(), xb.contiguous()
    xs = xs[:3] + [t.detach().requires_grad_() for t in (xf, xb)]
    errs, o, grads = _errors_vs_oracle(xs, do, gate_logit_normalizer=16.0)
    assert o.dtype == xs[0].dtype and [g.dtype for g in grads] == [t.dtype for t in xs]
    bad = {n: e for n, e in errs.items() if not e <= TOL[dtype]}
    assert not bad, f"logits T={T} K={K} V={V} {dtype}: {errs}"


@cuda
@pytest.mark.parametrize("B,T,H,K,V,kernel,choice", [
    (256, 196, 3, 32, 64, "walk", (2, 168)), (128, 196, 12, 16, 32, "walk", (2, None)),
    (128, 49, 24, 16, 32, "block64", (2, None)), (2, 196, 3, 32, 64, "walk", (4, None))])
def test_seq_forward_launch_choices(B, T, H, K, V, kernel, choice):
    """Each of the seq forward's launch choices (config.seq_fwd_launch: on 132 SMs ViG-T 224's walk on 2 warps
    capped at 168 registers, ViG-H-T stage 3's on 2 warps, stage 4's 64-row blocks on 2 warps, a small batch on 4)
    against the torch backend in fp32, gate logits as the models pass them."""
    from vig.ops.bigla.triton.config import seq_fwd_launch
    if torch.cuda.get_device_properties(0).multi_processor_count == 132:
        launch = seq_fwd_launch(kernel, K, V, B * H * (1 if kernel == "walk" else -(-T // 64)), 132, "bf16")
        assert (launch["num_warps"], launch.get("maxnreg")) == choice
    xs, _ = _inputs(B, T, H, K, V, torch.bfloat16, True, False, 11)
    o = bigla(*xs, backend="triton", gate_logit_normalizer=16.0)
    ref = bigla(*[x.detach().float() for x in xs], backend="torch", gate_logit_normalizer=16.0)
    assert rel_rmse(o, ref.double()) <= 5e-3


@cuda
def test_large_batch_heads_and_auto_dispatch():
    # 1024 sequences: on an H100 / H200 (132 SMs) the walking forward takes 2 warps, uncapped
    # (config.seq_fwd_launch: 2 waves at 4 programs per SM)
    xs, do = _inputs(128, 197, 8, 32, 64, torch.bfloat16, True, True, 7)  # fp32 gates with bf16 inputs
    o = bigla(*xs)  # auto -> triton on CUDA
    ref = bigla(*[x.detach().float() for x in xs], backend="torch")
    assert rel_rmse(o, ref.double()) <= 5e-3


@cuda
@pytest.mark.parametrize("T", (49, 300))  # the block-pair forward (T <= 64 at 16, 32) and the chunk path
def test_nan_input_terminates_and_stays_local(T):
    xs, do = _inputs(2, T, 2, 16, 32, torch.float32, False, True, 3)
    q = xs[0].detach().clone()
    q[0, 5, 0, 0] = float("nan")
    o = bigla(q, *[x.detach() for x in xs[1:]], backend="triton")
    torch.cuda.synchronize()
    assert torch.isnan(o[0, :, 0]).any()
    assert torch.isfinite(o[1]).all() and torch.isfinite(o[:, :, 1]).all()


@cuda
def test_no_graph_break_on_cuda():
    q = torch.randn(2, 17, 2, 16, device="cuda")
    v = torch.randn(2, 17, 2, 32, device="cuda")
    g = F.logsigmoid(q)

    def f(q, v, g):
        return bigla(q, q, v, g, g).sum()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(f)(q, v, g)
    assert explained.graph_break_count == 0, explained.break_reasons


@cuda
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("split", ["0", "1"])
@pytest.mark.parametrize("T", [200, 300])
def test_strong_gates_take_the_exact_path(T, dtype, split, monkeypatch):
    """Chunks whose summed gates pass the fast path's bound (_intra.SPAN_MAX) mixed with mild ones (T = 200: seq
    forward, 300: chunk forward); split: the seq forward and the chunk backward as two launches each, the first
    without the exact path (VIG_BIGLA_SPLIT_EXACT)."""
    monkeypatch.setenv("VIG_BIGLA_SPLIT_EXACT", split)
    xs, do = _inputs(2, T, 2, 32, 64, DTYPES[dtype], False, True, 11)
    strong = torch.rand(2, T, 2, 32, device="cuda") < 0.3
    gf = torch.where(strong, torch.full_like(xs[3], -8.0), xs[3].detach()).requires_grad_()
    gb = torch.where(strong.flip(1), torch.full_like(xs[4], -8.0), xs[4].detach()).requires_grad_()
    xs = xs[:3] + [gf, gb]
    errs, _, _ = _errors_vs_oracle(xs, do)
    assert all(e <= TOL[dtype] for e in errs.values()), errs


@cuda
@pytest.mark.parametrize("T", (17, 196, 1000, 3136))
@pytest.mark.parametrize("K,V", ((16, 32), (32, 64)))
@pytest.mark.parametrize("dtype", ("fp32", "bf16"))
@pytest.mark.parametrize("path", ("seq", "chunk", "chunk,VIG_BIGLA_DV_BF16=0", "chunk,VIG_BIGLA_SPLIT_EXACT=0",
                                  "chunk,VIG_BIGLA_BWD_WARPS=4", "chunk,VIG_BIGLA_BWD_WARPS=1",
                                  "chunk,VIG_BIGLA_WALK_WARPS=1", "seq,VIG_BIGLA_SPLIT_EXACT=1",
                                  "seq,VIG_BIGLA_FWD_SCRATCH=fp32", "seq,VIG_BIGLA_FWD_TILE=0",
                                  "seq,VIG_BIGLA_FWD_TILE=16", "seq,VIG_BIGLA_FWD_TILE=32", "seq,VIG_BIGLA_FWD_TILE=64",
                                  "seq,VIG_BIGLA_WARPS=2", "seq,VIG_BIGLA_WARPS=1",
                                  "chunk,VIG_BIGLA_FP32_BWD_PREC=ieee"))
def test_each_path_matches_oracle(path, T, K, V, dtype, monkeypatch):
    """Each kernel path forced for forward and backward at the model head dims (by default the
    forward of short sequences takes seq and every backward with K*V <= 64*64 takes chunk), the chunk
    path also with dv's dots on the hi + lo operand split (bf16 inputs; the default rounds them to bf16) and
    with its backward as one launch (the default splits it into fast-path and exact-path launches), its gradient
    launches on 4 warps or 1, or its states walks on 1 warp, and the seq path with its forward split that way or
    with its scratch in fp32 (bf16 inputs store it in bf16 by default), and the block-pair forward (T <= 256) off or
    at each block size, or on 2 warps (the walking forward's choice for many programs) or on 1 (every kernel: an A/B
    setting), and fp32's chunk backward on FMA dots (VIG_BIGLA_FP32_BWD_PREC=ieee; the default is 3xtf32; no effect
    on bf16)."""
    path, _, knob = path.partition(",")
    env = dict([knob.split("=")]) if knob else {}
    _assert_matches_oracle(monkeypatch, {"VIG_BIGLA_PATH": path, **env}, 2 if T <= 256 else 1, T, K, V, dtype,
                           T % 2 == 1, T + K)


@cuda
@pytest.mark.parametrize("T", (1, 17, 196, 256))
@pytest.mark.parametrize("dtype", ("fp32", "bf16", "fp16"))
@pytest.mark.parametrize("logits", (False, True))
@pytest.mark.parametrize("knob", ("default", "0"))
def test_saved_key_states_match_oracle(T, dtype, logits, knob, monkeypatch):
    """The seq forward saves S^f, S^b for the chunk backward, whose walk takes the do states alone (the default at
    ViG-T's head dims); VIG_BIGLA_SAVE_KEY_STATES=0 walks all four states in the backward. With log-decay gates and
    gate logits (strided inputs at odd T). A spy checks whether the forward saved them."""
    from vig.ops.bigla.triton import launch
    if knob == "default":
        monkeypatch.delenv("VIG_BIGLA_SAVE_KEY_STATES", raising=False)
    else:
        monkeypatch.setenv("VIG_BIGLA_SAVE_KEY_STATES", knob)
    saved = []
    fwd = launch.bigla_fwd
    monkeypatch.setattr(launch, "bigla_fwd", lambda *a, **kw: saved.append(bool(kw.get("save_keys"))) or fwd(*a, **kw))
    xs, do = _inputs(2, T, 3, 32, 64, DTYPES[dtype], T % 2 == 1, dtype == "fp32", T * 7 + 3)
    if logits:
        xs = [*xs[:3], *((torch.randn_like(g) * 3).requires_grad_() for g in xs[3:])]
    errs, _, _ = _errors_vs_oracle(xs, do, 16.0 if logits else None)
    assert saved == [knob == "default"], saved
    assert all(e <= TOL[dtype] for e in errs.values()), errs


@cuda
@pytest.mark.parametrize("T", (17, 196, 1000))
@pytest.mark.parametrize("dtype", ("fp32", "bf16", "fp16"))
@pytest.mark.parametrize("saved_keys", ("1", "0"))
@pytest.mark.parametrize("logits", (True, False))
def test_programmatic_launch_matches_oracle_and_the_plain_launch(T, dtype, saved_keys, logits, monkeypatch):
    """VIG_BIGLA_PDL=1 (config.programmatic_launch): the chunk backward starts while the states walk runs and waits
    for it where it first reads a state. Against the oracle, and bit for bit over repeated calls against the same
    kernels launched without the attribute (config.PDL_LAUNCH_ATTRIBUTE), whose waits return at once: the kernels are
    deterministic, so a read before the walk's write would show as a difference. (Not against the kernels compiled
    without PDL: with log-space gates their last bits differed there, within the oracle's tolerance; H100,
    session 53.) Gate logits
    and log-space gates, with chunks past the fast path's span, so the exact-path list's count, zeroed by the walk,
    is counted into too."""
    monkeypatch.setenv("VIG_BIGLA_SAVE_KEY_STATES", saved_keys)
    xs, do = _inputs(2, T, 3, 32, 64, DTYPES[dtype], True, False, T * 5 + 1)
    strong = torch.rand(2, T, 3, 32, device="cuda") < 0.3  # chunks whose gate span leaves the fast path
    if logits:
        hard, gates, norm = -300.0, [torch.randn_like(g) * 3 for g in xs[3:]], 16.0
    else:
        hard, gates, norm = -8.0, [g.detach() for g in xs[3:]], None
    gates = [torch.where(s, torch.full_like(g, hard), g) for s, g in zip((strong, strong.flip(1)), gates)]
    xs = [*xs[:3], *(g.detach().requires_grad_() for g in gates)]
    from vig.ops.bigla.triton import config
    monkeypatch.setenv("VIG_BIGLA_PDL", "1")
    monkeypatch.setattr(config, "PDL_LAUNCH_ATTRIBUTE", False)
    _, _, no_overlap = _errors_vs_oracle(xs, do, norm)
    monkeypatch.setattr(config, "PDL_LAUNCH_ATTRIBUTE", True)
    errs, _, _ = _errors_vs_oracle(xs, do, norm)
    assert all(e <= TOL[dtype] for e in errs.values()), errs
    for _ in range(20):
        o = bigla(*xs, backend="triton", gate_logit_normalizer=norm)
        grads = torch.autograd.grad(o, xs, do)
        for name, a, b in zip(NAMES[1:], grads, no_overlap):
            assert torch.equal(a, b), name


@cuda
@pytest.mark.parametrize("T", (17, 196, 256, 1000))
@pytest.mark.parametrize("K,V", ((16, 32), (32, 64), (64, 64)))
@pytest.mark.parametrize("dtype", ("fp32", "bf16"))
def test_chunk_forward_matches_oracle(T, K, V, dtype, monkeypatch):
    """The chunk forward (its entering states walked by a separate kernel) forced at every T."""
    _assert_matches_oracle(monkeypatch, {"VIG_BIGLA_PATH": "chunk"}, 2, T, K, V, dtype, T % 2 == 0, 11 * T + K)


@cuda
@pytest.mark.parametrize("T", (197, 1000, 3136))
@pytest.mark.parametrize("dtype", ("fp32", "bf16"))
@pytest.mark.parametrize("segments", ("default", "VIG_BIGLA_FWD_SEGMENTS=seq", "VIG_BIGLA_BWD_SEGMENTS=seq"))
def test_segmented_states_walk_matches_oracle(segments, T, dtype, monkeypatch):
    """The chunk path's segmented states walks forced to 256-token segments (config.walk_segment_chunks): by
    default both walk from zero (local) and take the segment scan's entering states afterwards: the forward adds
    them in the chunk forward, the backward to the stored states in one pass (states_fixup_kernel); each also
    from the seq path's segment scan."""
    env = {"VIG_BIGLA_PATH": "chunk", "VIG_BIGLA_WALK_SEGMENT": "256"}
    if segments != "default":
        env.update([segments.split("=")])
    _assert_matches_oracle(monkeypatch, env, 1, T, 32, 64, dtype, T % 2 == 1, 7 * T)


@cuda
def test_hard_reset_gates_stay_finite_and_match():
    xs, do = _inputs(2, 197, 2, 32, 64, torch.float32, False, True, 5)
    gf, gb = xs[3].detach().clone(), xs[4].detach().clone()
    gf[:, 60], gb[:, 130] = float("-inf"), float("-inf")
    xs = xs[:3] + [gf.requires_grad_(), gb.requires_grad_()]
    errs, _, _ = _errors_vs_oracle(xs, do)
    assert all(e <= 1e-5 for e in errs.values()), errs


@cuda
@pytest.mark.parametrize("T", (17, 196, 1000, 3136))
@pytest.mark.parametrize("K,V", ((16, 32), (32, 64), (64, 64)))
@pytest.mark.parametrize("dtype", ("bf16", "fp16"))
def test_tf32_dot_mode_matches_oracle(T, K, V, dtype, monkeypatch):
    """Half inputs with tf32 dots (the default for fp16 and for every backward; bf16 inputs take bf16 forward
    dots by default) and fp32 chunk states (the default is bf16)."""
    monkeypatch.setenv("VIG_BIGLA_STATES", "fp32")
    monkeypatch.setenv("VIG_BIGLA_PREC", "tf32")
    monkeypatch.setenv("VIG_BIGLA_BWD_PREC", "tf32")
    xs, do = _inputs(2 if T <= 256 else 1, T, 2, K, V, DTYPES[dtype], T % 2 == 0, False, 3 * T + V)
    errs, _, _ = _errors_vs_oracle(xs, do)
    assert all(e <= TOL[dtype] for e in errs.values()), errs


@cuda
@pytest.mark.parametrize("chunks", ["16,16,bf16", "32,32,bf16", "64,16,bf16", "64,64,tf32", "32,16,tf32"])
def test_chunk_sizes_match_oracle(chunks, monkeypatch):
    fwd_c, bwd_c, prec = chunks.split(",")
    monkeypatch.setenv("VIG_BIGLA_CHUNK", fwd_c)
    monkeypatch.setenv("VIG_BIGLA_CHUNK_BWD", bwd_c)
    monkeypatch.setenv("VIG_BIGLA_PREC", prec)
    monkeypatch.setenv("VIG_BIGLA_BWD_PREC", prec)
    for T, K, V in ((197, 32, 64), (1000, 16, 32)):
        xs, do = _inputs(2, T, 2, K, V, torch.bfloat16, True, True, T)
        errs, _, _ = _errors_vs_oracle(xs, do)
        assert all(e <= 5e-3 for e in errs.values()), (T, errs)


@cuda
@pytest.mark.parametrize("T", (17, 196, 3136))
def test_bf16_dot_mode_outputs_and_value_grads(T, monkeypatch):
    """The opt-in bf16-operand mode: output, dq, dk, dv within 5e-3; the gate grads measured
    5.5e-3 to 6.4e-3 (why it is not the default), held here to 1e-2 so a regression still shows."""
    monkeypatch.setenv("VIG_BIGLA_PREC", "bf16")
    monkeypatch.setenv("VIG_BIGLA_BWD_PREC", "bf16")
    xs, do = _inputs(2 if T <= 256 else 1, T, 2, 32, 64, torch.bfloat16, True, False, T)
    errs, _, _ = _errors_vs_oracle(xs, do)
    assert all(errs[n] <= 5e-3 for n in NAMES[:4]) and all(errs[n] <= 1e-2 for n in NAMES[4:]), errs


@cuda
@pytest.mark.parametrize("T", (17, 196, 1000, 3136))
@pytest.mark.parametrize("K,V", ((16, 32), (32, 64), (64, 64)))
@pytest.mark.parametrize("mode", ("carry", "bf16"))
@pytest.mark.parametrize("logits", (False, True))
def test_bwd_scores_modes_match_oracle(T, K, V, mode, logits, monkeypatch):
    """VIG_BIGLA_BWD_P (config.bwd_scores_mode, bf16 inputs): the chunk backward carries the forward direction's
    in-chunk scores P as bf16 (carry), or also forms P from bf16 operands (bf16). Every gradient within 5e-3. P feeds
    dv alone, so the other gradients' errors stay the default's (to 1%: ptxas may schedule them differently)."""
    xs, do = _inputs(2 if T <= 256 else 1, T, 3, K, V, torch.bfloat16, T % 2 == 1, False, T + K)
    norm = None
    if logits:
        norm = 16.0
        xs = [*xs[:3], *((torch.randn_like(g) * 3).requires_grad_() for g in xs[3:])]
    refs = _oracle(xs, do, norm)  # once: it walks T steps in float64
    monkeypatch.setenv("VIG_BIGLA_BWD_P", "tf32")
    default, _, _ = _errors_vs_oracle(xs, do, norm, refs)
    monkeypatch.setenv("VIG_BIGLA_BWD_P", mode)
    errs, _, _ = _errors_vs_oracle(xs, do, norm, refs)
    assert all(e <= 5e-3 for e in errs.values()), (errs, default)
    for n in ("o", "dq", "dk", "dg_fwd", "dg_bwd"):
        assert abs(errs[n] - default[n]) <= 0.01 * default[n], (n, errs, default)
