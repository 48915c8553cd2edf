"""The V2 stem's first conv + LayerNorm2d + SiLU as one kernel at inference (layers/fused/stem.py, stem_op.py,
embed.V2PatchEmbed).

CPU under TRITON_INTERPRET=1 (one child process, this file run as a script): the kernel against float64 (fp32
<= 1e-5; bf16 no worse than the plain path's bf16, both against float64), at patch 16's k9 s8 on sizes the windows
cover whole and not, 96, 192 and 384 output channels (ViG-T / S / B; both launches), a strided image, patch 4's
k3 s2; an empty batch; opcheck; the stem compiled by inductor with the route forced, against its plain eager path.
CPU: the route's rule, the geometry, errors, the FLOP formula, the launch knob.
CUDA: ViG-T's and ViG-S's stems in bf16 and fp32.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_rmse as _rel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on CUDA only")
# (name, image [B, C, H, W], output channels, patch, dtype, channels_last image)
CASES = [("fp32_k9s8_n96", (2, 3, 40, 48), 96, 16, torch.float32, False),
         ("fp32_k9s8_n192_partial_windows", (1, 3, 37, 45), 192, 16, torch.float32, False),
         ("fp32_k3s2_n32_channels_last", (2, 3, 14, 10), 32, 4, torch.float32, True),
         ("fp32_k9s8_n384_vig_b_block", (1, 3, 24, 32), 384, 16, torch.float32, False),
         ("bf16_k9s8_n96", (2, 3, 48, 40), 96, 16, torch.bfloat16, False)]
TOL = 1e-5


def _stem(n, patch):
    from vig.layers.embed import V2PatchEmbed
    torch.manual_seed(0)
    stem = V2PatchEmbed(patch_size=patch, embed_dim=2 * n)
    with torch.no_grad():  # a non-trivial norm, so a dropped affine shows
        for t in (stem.proj[1].weight, stem.proj[1].bias, stem.proj[0].bias):
            t.add_(0.3 * torch.randn_like(t))
    return stem


def _head_oracle(stem, x):
    """proj[0:3] in float64, NHWC."""
    conv, norm = stem.proj[0], stem.proj[1]
    y = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), conv.stride, conv.padding)
    y = F.layer_norm(y.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight.double(), norm.bias.double(), norm.eps)
    return F.silu(y)


def _plain_bf16(stem, x):
    """The plain path in bf16 as autocast runs it: the conv on bf16 operands, rounded to bf16, normed in fp32."""
    conv, norm = stem.proj[0], stem.proj[1]
    y = F.conv2d(x.bfloat16(), conv.weight.bfloat16(), conv.bias.bfloat16(), conv.stride, conv.padding)
    y = F.layer_norm(y.float().permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return F.silu(y).bfloat16()


def _run_op(stem, x, dtype):
    from vig.layers.fused.stem_op import stem_conv_norm_silu, stem_weights
    conv, norm = stem.proj[0], stem.proj[1]
    args = (x, *stem_weights(conv.weight, dtype), conv.bias, norm.weight, norm.bias, list(conv.kernel_size),
            list(conv.stride), norm.eps)
    return stem_conv_norm_silu(*args), args


def run_cases():
    from vig.layers.fused.stem_op import stem_conv_norm_silu
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, shape, n, patch, dtype, channels_last in CASES:
        stem = _stem(n, patch)
        x = torch.randn(shape, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            got, args = _run_op(stem, x, dtype)
            ref = _head_oracle(stem, x)
            out[name] = {"y": _rel(got, ref), "dtype": str(got.dtype), "shape": list(got.shape),
                         "ref_shape": list(ref.shape)}
            if dtype == torch.bfloat16:
                out[name]["plain"] = _rel(_plain_bf16(stem, x), ref)
        if name == "fp32_k9s8_n96":
            # inference only (no autograd registered): opcheck on inputs that need no gradient
            detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
            report = torch.library.opcheck(stem_conv_norm_silu, detached)
            out[name]["opcheck"] = {k: v for k, v in report.items() if v != "SUCCESS"}
    out["compiled"] = _compiled_stem()
    with torch.no_grad():  # an empty batch launches nothing
        out["empty"] = list(_run_op(_stem(96, 16), torch.randn(0, 3, 32, 32), torch.float32)[0].shape)
    return out


def _compiled_stem():
    """ViG-T's stem (k9 s8 into 96 channels, then the second conv and norm) compiled by inductor on CPU tensors with
    the fused head forced, against its plain eager path."""
    import vig.layers.embed as embed
    from torch._inductor.utils import run_and_get_code
    stem = _stem(96, 16)
    x = torch.randn(2, 3, 48, 64)
    real = embed.fuses_stem_head
    try:
        with torch.no_grad():
            plain = stem(x)
            embed.fuses_stem_head = lambda conv, t: True
            torch._dynamo.reset()
            fused, codes = run_and_get_code(torch.compile(stem, fullgraph=True), x)
    finally:
        embed.fuses_stem_head = real
    return {"y": _rel(fused, plain), "op_in_code": int(any("vig.stem_conv_norm_silu" in c for c in codes))}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreted_stem_head_matches_float64(interpreted, case):
    name, dtype = case[0], case[4]
    r = interpreted[name]
    assert r["shape"] == r["ref_shape"] and r["dtype"] == str(dtype), r
    if dtype == torch.float32:
        assert r["y"] <= TOL, r
    else:
        assert r["y"] <= 1.1 * r["plain"] + 1e-4, r
    assert r.get("opcheck", {}) == {}, r["opcheck"]


def test_interpreted_empty_batch(interpreted):
    assert interpreted["empty"] == [0, 4, 4, 96]


def test_interpreted_compiled_stem_matches_plain(interpreted):
    r = interpreted["compiled"]
    assert r["op_in_code"] == 1 and r["y"] <= TOL, r


def test_stem_head_rule(monkeypatch):
    import vig.layers.embed as embed
    conv = _stem(96, 16).proj[0]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not embed.fuses_stem_head(conv, x)  # CPU
        monkeypatch.setattr(embed, "fused_op_enabled", lambda t, name: name == "stem_op")
        assert embed.fuses_stem_head(conv, x)
        with torch.autocast("cpu", torch.bfloat16):
            assert embed.fuses_stem_head(conv, x)
        with torch.autocast("cpu", torch.float16):
            assert not embed.fuses_stem_head(conv, x)  # fp16 compute: the plain path
        assert not embed.fuses_stem_head(conv, x.half())
        assert not embed.fuses_stem_head(conv, x.to(torch.uint8))  # the plain conv's own error for integer images
    assert not embed.fuses_stem_head(conv, x)  # gradients on: training keeps the plain path


def test_launch_knob(monkeypatch):
    from vig.layers.fused.stem import stem_blocks
    monkeypatch.setenv("VIG_STEM_LAUNCH", "32,4,2")
    assert stem_blocks(96) == (32, {"num_warps": 4, "num_stages": 2})
    monkeypatch.setenv("VIG_STEM_LAUNCH", "32,4")
    with pytest.raises(ValueError, match="VIG_STEM_LAUNCH must be pixels,warps,stages"):
        stem_blocks(96)


def test_errors_name_the_argument():
    from vig.layers.fused.stem_op import check_stem_args
    x, wm, we, v = torch.randn(1, 3, 32, 32), torch.randn(216, 96), torch.randn(27, 96), torch.randn(96)
    geometry = ([9, 9], [8, 8])
    check_stem_args(x, wm, we, v, v, v, *geometry)
    with pytest.raises(ValueError, match=r"x must be \[B, C, H, W\]"):
        check_stem_args(x[0], wm, we, v, v, v, *geometry)
    with pytest.raises(ValueError, match="not the V2 stem's geometry"):
        check_stem_args(x, wm, we, v, v, v, [7, 7], [4, 4])
    with pytest.raises(ValueError, match=r"wm must be contiguous \[216, 96\]"):
        check_stem_args(x, wm[:200], we, v, v, v, *geometry)
    with pytest.raises(ValueError, match=r"we must be contiguous \[27, 96\]"):
        check_stem_args(x, wm, we.t().contiguous().t(), v, v, v, *geometry)
    with pytest.raises(ValueError, match="must share the compute dtype"):
        check_stem_args(x, wm.half(), we.half(), v, v, v, *geometry)
    with pytest.raises(ValueError, match=r"ln_b must be a contiguous \[96\] vector"):
        check_stem_args(x, wm, we, v, v, v[:90], *geometry)
    with pytest.raises(ValueError, match="smaller than the"):
        check_stem_args(x[..., :6, :6], wm, we, v, v, v, *geometry)


def test_geometry_rule():
    from vig.layers.embed import v2_stem_geometry
    from vig.layers.fused.stem_op import stem_geometry_supported
    for patch, ok in ((4, True), (8, True), (16, True), (32, True), (12, False), (6, False)):
        k, s = v2_stem_geometry(patch)
        assert stem_geometry_supported((k, k), (s, s), (1, 1)) == ok, patch
    assert not stem_geometry_supported((9, 9), (8, 8), (0, 0))


def test_flop_counter_counts_the_conv():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode
    import vig.layers.fused.stem_op  # noqa: F401  (registers the op and its formula)
    stem = _stem(96, 16)
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.randn(2, 3, 224, 224)
        with FlopCounterMode(display=False) as plain:
            stem.proj[0](x)
        with FlopCounterMode(display=False) as fused:
            _run_op(stem, x, torch.float32)
    assert fused.get_total_flops() == plain.get_total_flops() == 2 * 2 * 28 * 28 * 243 * 96


@cuda
@pytest.mark.parametrize("n", [96, 192])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_stem_head_matches_float64(dtype, n):
    """ViG-T's / ViG-S's stems at 224² (bs 8): fp32 <= 1e-5 (TF32 off), bf16 no worse than the plain bf16 path."""
    stem = _stem(n, 16).cuda()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        got, _ = _run_op(stem, x, dtype)
        ref = _head_oracle(stem, x)
        bar = TOL if dtype == torch.float32 else 1.1 * _rel(_plain_bf16(stem, x), ref) + 1e-4
    assert _rel(got, ref) <= bar, (_rel(got, ref), bar)


if __name__ == "__main__":
    print(json.dumps(run_cases()))
