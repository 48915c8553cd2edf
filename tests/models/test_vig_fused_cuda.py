"""Whole plain-ViG models on CUDA: the fused layers (fused residual add + norm across blocks, fused
gate with ViG-T's SiLU, RMSNorm, SwiGLU) against the plain-PyTorch layers (VIG_FUSED=0)."""
import pytest
import timm
import torch
from numerics import rel_rmse

import vig.models  # noqa: F401  (registers the models)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(model, x, fused, monkeypatch):
    monkeypatch.setenv("VIG_FUSED", "1" if fused else "0")
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().square().mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach().float(), grads


@cuda
@pytest.mark.parametrize("name,opt_in", [("vig_tiny", ""), ("vig_small", ""), ("vig_tiny", "add_rmsnorm")])
def test_fused_model_matches_plain_fp32(name, opt_in, monkeypatch):
    # the channels-last stem may take another cuDNN algorithm: compare both at full fp32, not TF32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setenv("VIG_FUSED_ON", opt_in)
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=64, num_classes=10, drop_path_rate=0.0).cuda().train()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    ref, ref_g = _run(model, x, False, monkeypatch)
    out, g = _run(model, x, True, monkeypatch)
    assert float((out - ref).norm() / ref.norm()) <= 1e-5
    assert g.keys() == ref_g.keys()
    for n in ref_g:
        err = rel_rmse(g[n], ref_g[n])
        assert err <= 1e-4, f"{n}: {err:.2e}"


def _stem_counting(monkeypatch, route):
    """ViG-T's stem at 96 px (TF32 off), an input, and the list each call of embed.<route> appends to."""
    import vig.layers.embed as embed
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    stem = timm.create_model("vig_tiny", img_size=96, num_classes=0).patch_embed.cuda()
    calls = []
    real = getattr(embed, route)
    monkeypatch.setattr(embed, route, lambda *a: calls.append(1) or real(*a))
    return stem, torch.randn(3, 3, 96, 96, device="cuda"), calls


@cuda
@pytest.mark.parametrize("autocast", [False, True])
def test_stem_variants_match_nchw(autocast, monkeypatch):
    stem, x, gemm_calls = _stem_counting(monkeypatch, "conv_as_gemm")
    outs = {}
    ref = "stem_gemm,stem_cl"  # the NCHW cuDNN convs
    for off in (ref, "stem_gemm", ""):  # then the channels-last convs, then the default GEMM first conv
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            outs[off] = stem(x).float()
        assert len(gemm_calls) == (off == ""), off  # the GEMM path runs exactly when it is not off
    for off in ("stem_gemm", ""):
        assert outs[off].is_contiguous(memory_format=torch.channels_last)
        err = float((outs[off] - outs[ref]).norm() / outs[ref].norm())
        assert err <= (5e-3 if autocast else 1e-5), (off, err)


@cuda
@pytest.mark.parametrize("autocast", [False, True])
def test_stem_fused_head_matches_nchw_at_inference(autocast, monkeypatch):
    """Without gradients the stem's first conv, norm and SiLU run as vig::stem_conv_norm_silu: against the NCHW
    cuDNN path, the whole stem's output (through the second conv and norm)."""
    stem, x, fused_calls = _stem_counting(monkeypatch, "stem_head_fused")
    outs = {}
    for off in ("stem_op,stem_gemm,stem_cl", ""):
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            outs[off] = stem(x).float()
    assert len(fused_calls) == 1
    assert outs[""].is_contiguous(memory_format=torch.channels_last)
    err = float((outs[""] - outs["stem_op,stem_gemm,stem_cl"]).norm() / outs["stem_op,stem_gemm,stem_cl"].norm())
    assert err <= (5e-3 if autocast else 1e-5), err


@cuda
def test_compiled_add_rmsnorm_under_autocast_is_no_worse_than_plain(monkeypatch):
    """ViG-T's training step compiled (aot_eager: the custom ops as a compiled step calls them) under bf16 autocast,
    with vig::add_rms_norm (its norms written in bf16, the branch grads in bf16 from one pass) and without, each
    against the same step in fp32: the output and every grad no worse than without the op, up to 1.25x + 1e-4. On
    CPU, with the kernels interpreted and their bf16 stores rounded to nearest as a GPU does, the worst of the 181
    ratios was 1.05 (the interpreter itself truncates: 1.95)."""
    torch.manual_seed(0)
    model = timm.create_model("vig_tiny", img_size=64, num_classes=10, drop_path_rate=0.0).cuda().train()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)

    def step(opt_in, autocast):
        monkeypatch.setenv("VIG_FUSED_ON", opt_in)
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="aot_eager")
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = compiled(x)
        out.float().square().mean().backward()
        grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters()}
        return {"out": out.detach().float(), **grads}

    ref, plain, fused = step("", False), step("", True), step("add_rmsnorm", True)
    assert ref.keys() == fused.keys()
    for n in ref:
        e_f, e_p = rel_rmse(fused[n], ref[n]), rel_rmse(plain[n], ref[n])
        assert e_f <= 1.25 * e_p + 1e-4, f"{n}: with the op {e_f:.2e}, without {e_p:.2e} (against fp32)"


@cuda
@pytest.mark.parametrize("name", ["vig_tiny", "vig_small"])
def test_inference_under_autocast_is_no_worse_than_plain(name, monkeypatch):
    """Inference under bf16 autocast, where the fused MLP projection (vig::linear_swiglu) runs at every width, against
    the plain layers' bf16 inference (VIG_FUSED=0), each against fp32 plain: no worse, up to 1.1x + 1e-4. The fused
    run also takes the merged projections (bigla_attn.merged_projections) in every block and the stem's fused head
    (vig::stem_conv_norm_silu)."""
    import vig.layers.bigla_attn as attn
    import vig.layers.embed as embed
    merged, stem = [], []
    real_merge, real_stem = attn.merged_projections, embed.stem_head_fused
    monkeypatch.setattr(attn, "merged_projections", lambda *a: merged.append(1) or real_merge(*a))
    monkeypatch.setattr(embed, "stem_head_fused", lambda *a: stem.append(1) or real_stem(*a))
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=64, num_classes=10).cuda().eval()
    x = torch.randn(8, 3, 64, 64, device="cuda")

    def infer(fused, autocast):
        monkeypatch.setenv("VIG_FUSED", "1" if fused else "0")
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=autocast), \
                torch.profiler.profile() as prof:
            out = model(x).float()
        return out, {e.name for e in prof.events()}
    ref, _ = infer(False, False)
    plain, _ = infer(False, True)
    fused, names = infer(True, True)
    assert "vig::linear_swiglu" in names
    assert len(merged) == len(model.blocks), len(merged)
    assert len(stem) == 1, len(stem)
    e_f, e_p = (float((y - ref).norm() / ref.norm()) for y in (fused, plain))
    assert e_f <= 1.1 * e_p + 1e-4, f"fused {e_f:.2e}, plain {e_p:.2e} (against fp32)"


@cuda
@pytest.mark.parametrize("name", ["vig_tiny", "vig_base"])
def test_merged_projections_match_three_gemms_in_fp32(name, monkeypatch):
    """fp32 inference with the fused layers, the three projections of the conv output as one GEMM against three
    (VIG_FUSED_OFF=proj_merge): relative error <= 1e-5, TF32 off; ViG-B's stack (2,320 columns) padded to 2,368."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=64, num_classes=10).cuda().eval()
    with torch.no_grad():
        for blk in model.blocks:  # nonzero biases (init zeros them), so a misplaced bias shows
            blk.attn.g_proj.bias.normal_()
            blk.attn.gk_proj[1].bias.normal_()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    outs = {}
    for off in ("proj_merge", ""):
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        with torch.inference_mode():
            outs[off] = model(x).float()
    err = float((outs[""] - outs["proj_merge"]).norm() / outs["proj_merge"].norm())
    assert err <= 1e-5, err


@cuda
@pytest.mark.parametrize("name", ["vig_tiny", "vig_small"])
def test_weight_pack_leaves_inference_unchanged(name, monkeypatch):
    """The weight pack (on by default; VIG_FUSED_OFF=weight_pack): each block's GEMM and conv weights cast by one cat, the layers on views of
    it (ViG-S's merged stack padded by the weights that follow it), against the layers' own casts: bf16 autocast
    inference, relative difference <= 1e-6."""
    import vig.layers.blocks as blocks
    from vig.layers.weight_pack import block_weights
    packs = []

    def counted(*args):
        views = block_weights(*args)
        packs.append(views is not None)
        return views
    monkeypatch.setattr(blocks, "block_weights", counted)
    torch.manual_seed(0)
    model = timm.create_model(name, img_size=64, num_classes=10).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    outs = {}
    for off in ("weight_pack", ""):
        monkeypatch.setenv("VIG_FUSED_OFF", off)
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16):
            outs[off] = model(x).float()
    assert packs.count(True) == len(model.blocks), packs
    assert float((outs[""] - outs["weight_pack"]).norm() / outs["weight_pack"].norm()) <= 1e-6
