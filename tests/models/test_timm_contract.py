"""Ports of timm's tests/test_models.py contract checks, on all six ViG models at tiny resolution (CPU).

Plain ViG runs at 48 px (3x3 tokens), ViG-H at 32 px (stages 8x8 .. 1x1): enough to exercise every
module while keeping the B-size models affordable. Models are built once per module (grouped by pytest).
"""
import math

import pytest
import timm
import torch
from timm.models import group_parameters

import vig.models  # noqa: F401  (registers the models)



PLAIN = ["vig_tiny", "vig_small", "vig_base"]
HIER = ["vig_h_tiny", "vig_h_small", "vig_h_base"]
TOP1 = {"vig_tiny": 77.2, "vig_small": 81.7, "vig_base": 82.6, "vig_h_tiny": 82.8, "vig_h_small": 83.8,
        "vig_h_base": 84.2}


def img_size(name):
    return 32 if name.startswith("vig_h") else 48


def batch(name):
    torch.manual_seed(1)
    b = 1 if name.endswith("base") else 2
    return torch.randn(b, 3, img_size(name), img_size(name))


@pytest.fixture(scope="module", params=PLAIN + HIER)
def model(request):
    torch.manual_seed(0)
    m = timm.create_model(request.param, drop_path_rate=0.0).eval()
    m.name = request.param
    return m


def test_forward_backward_every_param_gets_grad(model):
    x = batch(model.name)
    model.train()
    try:
        out = model(x)
        assert out.shape == (x.shape[0], 1000)
        assert torch.isfinite(out).all()
        out.mean().backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, f"parameters without a gradient: {no_grad}"
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_default_cfg(model):
    cfg = model.pretrained_cfg
    assert cfg["tag"] == "in1k" and cfg["hf_hub_id"] == "hustvl/ViG" and cfg["num_classes"] == 1000
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN and cfg["std"] == timm.data.IMAGENET_DEFAULT_STD
    assert f"{TOP1[model.name]}%" in cfg["notes"][0]
    sd = model.state_dict()
    assert sd[cfg["first_conv"] + ".weight"].shape[1] == 3
    assert sd[cfg["classifier"] + ".weight"].shape == (1000, model.num_features)
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert data_cfg["crop_pct"] == 0.875 and data_cfg["input_size"] == (3, 224, 224)


@torch.no_grad()
def test_forward_features_head_and_pre_logits(model):
    x = batch(model.name)
    feats = model.forward_features(x)
    if model.name in PLAIN:
        assert feats.shape == (x.shape[0], (img_size(model.name) // 16) ** 2, model.num_features)
    else:
        assert feats.shape == (x.shape[0], model.num_features, 1, 1)
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (x.shape[0], model.num_features)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    torch.testing.assert_close(model.get_classifier()(pre), model(x))


@torch.no_grad()
def test_forward_intermediates(model):
    x = batch(model.name)
    final, inter = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x))
    info = model.feature_info
    assert len(inter) == len(info)
    for t, f in zip(inter, info):
        side = math.ceil(img_size(model.name) / f["reduction"])
        assert t.shape == (x.shape[0], f["num_chs"], side, side)
    last2 = model.forward_intermediates(x, indices=2, intermediates_only=True, stop_early=True)
    assert len(last2) == 2
    for a, b in zip(last2, inter[-2:]):
        torch.testing.assert_close(a, b)
    if model.name in PLAIN:
        (nlc,) = model.forward_intermediates(x, indices=[-1], norm=True, output_fmt="NLC", intermediates_only=True)
        torch.testing.assert_close(nlc, final)  # the last block, normed, is forward_features


def test_grad_checkpointing_equal(model):
    x = batch(model.name)
    probe = [p for n, p in model.named_parameters() if "qkv_proj" in n][0]
    model.train()
    try:
        ref = model(x)
        ref.sum().backward()
        ref_grad = probe.grad.clone()
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(True)
        out = model(x)
        out.sum().backward()
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(probe.grad, ref_grad)
    finally:
        model.set_grad_checkpointing(False)
        model.zero_grad(set_to_none=True)
        model.eval()


def test_group_matcher_covers_all_params_and_no_weight_decay(model):
    groups = group_parameters(model, model.group_matcher())
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    assert len(groups) >= 3  # stem, blocks..., final norm
    names = dict(model.named_parameters())
    assert all(n in names for n in model.no_weight_decay())
    assert model.no_weight_decay() == ({"pos_embed"} if model.name in PLAIN else set())


# --- classifier / features_only / pretrained files: the T-size models only ---------------------------

@pytest.mark.parametrize("name", ["vig_tiny", "vig_h_tiny"])
def test_reset_classifier_and_num_classes_zero(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, img_size(name), img_size(name))
    m = timm.create_model(name, num_classes=0).eval()
    with torch.no_grad():
        assert m(x).shape == (2, m.num_features)
        m.reset_classifier(7)
        assert m(x).shape == (2, 7)
        m.reset_classifier(0, global_pool="")
        unpooled = m(x)
    assert unpooled.dim() == (3 if name == "vig_tiny" else 4)  # tokens / a map, unpooled
    if name == "vig_h_tiny":  # NCHW, as forward_features gives it; a head applies per position
        with torch.no_grad():
            assert torch.equal(unpooled, m.forward_features(x))
            m.reset_classifier(5, global_pool="")
            assert m(x).shape == (2, 5) + unpooled.shape[2:]
    with pytest.raises(ValueError, match="global_pool"):
        m.reset_classifier(3, global_pool="max")


@pytest.mark.parametrize("name,channels,reductions", [
    ("vig_tiny", [192] * 4, [16] * 4),
    ("vig_h_tiny", [96, 192, 384, 768], [4, 8, 16, 32]),
])
def test_features_only(name, channels, reductions):
    torch.manual_seed(0)
    size = 64
    m = timm.create_model(name, features_only=True).eval()
    assert m.feature_info.channels() == channels and m.feature_info.reduction() == reductions
    with torch.no_grad():
        feats = m(torch.randn(1, 3, size, size))
    assert [tuple(f.shape) for f in feats] == [(1, c, size // r, size // r) for c, r in zip(channels, reductions)]


def test_features_only_custom_indices_and_in_chans():
    torch.manual_seed(0)
    m = timm.create_model("vig_tiny", features_only=True, out_indices=(1, 3), in_chans=1).eval()
    assert m.feature_info.channels() == [192, 192]
    with torch.no_grad():
        feats = m(torch.randn(1, 1, 48, 48))
    assert [tuple(f.shape) for f in feats] == [(1, 192, 3, 3)] * 2


@pytest.mark.parametrize("name", ["vig_tiny", "vig_h_tiny"])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_pretrained_local_file_loads_strictly(tmp_path, name, fmt):
    torch.manual_seed(0)
    src = timm.create_model(name).eval()
    sd = src.state_dict()
    path = tmp_path / f"weights.{fmt}"
    if fmt == "pth":
        torch.save({"model": sd}, path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    torch.manual_seed(123)
    dst = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x = torch.randn(1, 3, img_size(name), img_size(name))
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


@pytest.mark.parametrize("name", ["vig_tiny", "vig_h_tiny"])
def test_bad_inputs_raise_clear_errors(name):
    m = timm.create_model(name, depth=1) if name == "vig_tiny" else timm.create_model(name, depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="input channels"):
        m(torch.randn(1, 1, 48, 48))
    with pytest.raises(ValueError, match="4-D"):
        m(torch.randn(3, 48, 48))
    if name == "vig_tiny":
        with pytest.raises(ValueError, match="too small"):
            m(torch.randn(1, 3, 6, 32))


def test_vig_h_stop_early_returns_the_last_stage_taken():
    """Stopping before the last stage once ran the final norm (768 wide) on stage 2's downsampled map."""
    torch.manual_seed(0)
    m = timm.create_model("vig_h_tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, (stage1,) = m.forward_intermediates(x, indices=[1], stop_early=True)
        full = m.forward_intermediates(x, indices=[1])[1][0]
    assert torch.equal(final, stage1) and torch.equal(stage1, full)


class _Wrapper(torch.nn.Module):
    """An adapter-style module put in a block's place (LoRA, FSDP or checkpoint wrappers do the same)."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x, hw):
        return self.block(x, hw)


def test_plain_vig_blocks_run_through_call_when_observed():
    """The fused forward calls blocks' forward_pending; hooks, wrappers and feature_cls='hook' still see a module
    call with the block's own output, and the logits do not change."""
    torch.manual_seed(0)
    m = timm.create_model("vig_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)
        seen = []
        handle = m.blocks[3].register_forward_hook(lambda mod, inp, out: seen.append(out))
        hooked = m(x)
        handle.remove()
        block3 = m.forward_intermediates(x, indices=[3], output_fmt="NLC", intermediates_only=True)[0]
        m.blocks[5] = _Wrapper(m.blocks[5])
        wrapped = m(x)
        hook_feats = timm.create_model("vig_tiny", features_only=True, feature_cls="hook", out_indices=(3,)).eval()
    assert len(seen) == 1 and torch.allclose(seen[0], block3, atol=1e-6)
    torch.testing.assert_close(hooked, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wrapped, ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        (feat,) = hook_feats(x)
    assert feat.shape == block3.shape
