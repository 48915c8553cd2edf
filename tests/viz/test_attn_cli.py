"""`vig viz attn` on small random-init models: files, pictures, the attention property through a
real layer, and clear errors that leave nothing on disk."""
import sys

import numpy as np
import pytest
import timm
import torch

import vig.models  # noqa: F401  (registers the models)
from vig.cli import main
from vig.errors import UsageError
from vig.viz.attention import apply_attention, implicit_attention
from vig.viz.attn_maps import attention_figure, attention_maps
from vig.viz.capture import capture, list_mixers, resolve_layer
from vig.viz.io import load_image, png_bytes


class _Enough(Exception):
    pass


def _record_bigla_outputs(monkeypatch, mixer, count):
    """Wraps the op as the mixer's module calls it and records the outputs of the first `count`
    calls of a forward, then stops it."""
    module = sys.modules[type(mixer).__module__]
    outputs = []

    def recording(original):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            outputs.append(out)
            if len(outputs) == count:
                raise _Enough
            return out
        return call
    for attr in ("bigla", "bigla_packed"):  # ViG's mixer calls the packed form where it is enabled (CUDA)
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, recording(getattr(module, attr)))
    return outputs


# ViG-H shrunk (same blocks, fewer and narrower) so that building it takes no time on CPU
SMALL_VIG_H = dict(dims=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))


@pytest.mark.parametrize("name,kwargs,layer", [("vig_tiny", {}, "5"), ("vig_h_tiny", SMALL_VIG_H, "1.0")])
def test_captured_layer_maps_reproduce_its_bigla_output(monkeypatch, name, kwargs, layer):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval().double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    index, _, mixer = resolve_layer(list_mixers(model), layer)
    (q, k, v, g_fwd, g_bwd), (h, w) = capture(model, mixer, x)
    assert h * w == q.shape[1]
    outputs = _record_bigla_outputs(monkeypatch, mixer, index + 1)
    with torch.no_grad(), pytest.raises(_Enough):
        model(x)
    layer_out = outputs[index]
    _, _, merged = implicit_attention(q, k, g_fwd, g_bwd)
    err = (apply_attention(merged, v) - layer_out).norm() / layer_out.norm()
    assert err < 1e-10


def test_attn_default_writes_figure_and_maps(tmp_path, image_file, assert_nontrivial_png):
    out = tmp_path / "out"
    assert main(["viz", "attn", str(image_file), "--model", "vig_tiny", "--img-size", "80", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    # defaults: last layer (11), head 0, the centre token (2, 2) of the 5 x 5 grid
    assert files == ["attn_vig_tiny_scene0_L11_H0_T2-2.npz", "attn_vig_tiny_scene0_L11_H0_T2-2.png"]
    assert_nontrivial_png(out / files[1])
    data = np.load(out / files[0])
    assert data["map_merged"].shape == (5, 5) and data["w_merged"].shape == (1, 25)
    assert np.allclose(data["w_merged"], (data["w_forward"] + data["w_backward"]) / 2)
    assert np.all(data["w_forward"][0, 13:] == 0) and np.all(data["w_backward"][0, :12] == 0)
    assert data["map_merged"].std() > 0


def test_attn_all_tokens_writes_matrices(tmp_path, image_file, assert_nontrivial_png):
    out = tmp_path / "out"
    argv = ["viz", "attn", str(image_file), "--model", "vig_tiny", "--img-size", "64", "--layer", "2",
            "--head", "1", "--token", "all", "--out", str(out)]
    assert main(argv) == 0
    png = next(out.glob("*.png"))
    assert png.name == "attn_vig_tiny_scene0_L2_H1_Tall.png"
    assert_nontrivial_png(png)
    data = np.load(next(out.glob("*.npz")))
    assert data["w_merged"].shape == (16, 16) and data["map_forward"].shape == (4, 4)
    assert np.allclose(data["map_merged"], np.abs(data["w_merged"]).mean(axis=0).reshape(4, 4))


def test_vig_h_layer_by_stage_block(image_file, assert_nontrivial_png, tmp_path):
    model = timm.create_model("vig_h_tiny", **SMALL_VIG_H).eval()
    rgb = load_image(image_file, 64)
    result = attention_maps(model, rgb, layer="2.1", head=3, token="all")
    assert result["layer"] == 3 and result["layer_name"] == "layers.2.blocks.1.op"  # blocks: 1 + 1 + 2 + 1
    assert result["grid"] == (4, 4) and result["heads"] == 4  # 64 px / 4 (stem) / 2 / 2
    (tmp_path / "h.png").write_bytes(png_bytes(attention_figure(rgb, result, "vig_h_tiny")))
    assert_nontrivial_png(tmp_path / "h.png")
    with pytest.raises(UsageError, match="no BiGLA layer at stage 2, block 2; available: 0.0, 1.0, 2.0, 2.1, 3.0"):
        attention_maps(model, rgb, layer="2.2")


def test_attention_maps_api_marks_query_token(image_file):
    model = timm.create_model("vig_tiny").eval()
    rgb = load_image(image_file, 64)
    result = attention_maps(model, rgb, layer="-1", head=1, token=(0, 3))
    assert result["grid"] == (4, 4) and result["layer"] == 11
    fwd = result["maps"]["forward"]
    assert fwd[3, 1:].sum() == 0 and fwd[3, 0] > 0  # query (x=0, y=3): forward sees keys up to it only


@pytest.mark.parametrize("extra,needle", [
    (["--layer", "12"], "--layer 12 is out of range: this model has 12 BiGLA layers"),
    (["--layer", "0", "--head", "3"], "--head 3 is out of range"),
    (["--layer", "0", "--token", "5,0"], "--token 5,0 is outside the 5x5 token grid"),
    (["--token", "3"], "--token: expected X,Y"),
    (["--checkpoint", "missing.pth"], "--checkpoint: file not found"),
])
def test_attn_bad_arguments_are_named_and_write_nothing(tmp_path, image_file, capsys, extra, needle):
    out = tmp_path / "out"
    argv = ["viz", "attn", str(image_file), "--model", "vig_tiny", "--img-size", "80", "--out", str(out)] + extra
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_attn_missing_image_and_unknown_model(tmp_path, image_file, capsys):
    out = tmp_path / "out"
    assert main(["viz", "attn", str(tmp_path / "nope.jpg"), "--model", "vig_tiny", "--out", str(out)]) == 2
    assert "image file not found" in capsys.readouterr().err
    (tmp_path / "notes.jpg").write_text("not an image")
    assert main(["viz", "attn", str(tmp_path / "notes.jpg"), "--model", "vig_tiny", "--out", str(out)]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["viz", "attn", str(image_file), "--model", "vig_tinny", "--out", str(out)]) == 2
    assert "unknown model 'vig_tinny'" in capsys.readouterr().err
    with pytest.raises(UsageError, match="no BiGLA layer"):
        attention_maps(timm.create_model("resnet10t"), load_image(image_file, 32))
    assert not out.exists()


def test_attn_loads_checkpoint_strictly(tmp_path, image_file):
    torch.manual_seed(1)
    ckpt = tmp_path / "w.pth"
    torch.save({"model": timm.create_model("vig_tiny").state_dict()}, ckpt)
    argv = ["viz", "attn", str(image_file), "--model", "vig_tiny", "--img-size", "64", "--layer", "0",
            "--checkpoint", str(ckpt)]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    a, b = (np.load(next((tmp_path / d).glob("*.npz")))["w_merged"] for d in "ab")
    assert np.array_equal(a, b)  # the weights came from the file, not a fresh random init
    state = timm.create_model("vig_tiny").state_dict()
    del state["blocks.3.attn.qkv_proj.weight"]
    torch.save({"model": state}, ckpt)
    assert main(argv + ["--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("token", [(3, 3), (0, 0)])
def test_query_marker_keeps_the_axes_on_the_image(image_file, token):
    """A query on the last row/column: its outline reaches the image edge and ax.plot used to widen the axes,
    drawing a white band on the right and bottom of every panel."""
    rgb = load_image(image_file, 64)
    result = attention_maps(timm.create_model("vig_tiny").eval(), rgb, head=0, token=token)
    fig = attention_figure(rgb, result, "vig_tiny")
    for ax in fig.axes[:4]:  # the image and the three maps (the last axis is the colour bar)
        assert ax.get_xlim() == (-0.5, 63.5) and ax.get_ylim() == (63.5, -0.5)
    png_bytes(fig)


def test_attn_without_checkpoint_says_random_weights_and_repeats(tmp_path, image_file, capsys, monkeypatch):
    import vig.viz.attn_maps as attn_maps
    titles = []
    real = attn_maps.attention_figure
    monkeypatch.setattr(attn_maps, "attention_figure", lambda rgb, result, name: titles.append(name) or
                        real(rgb, result, name))
    argv = ["viz", "attn", str(image_file), "--model", "vig_tiny", "--img-size", "32", "--layer", "0"]
    for seed, out in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)  # whatever state the caller left: the init is seeded
        assert main(argv + ["--out", str(tmp_path / out)]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "vig_tiny: random weights" in err[0]
    a, b = (np.load(next((tmp_path / d).glob("*.npz")))["w_merged"] for d in "ab")
    assert np.array_equal(a, b)
    assert titles == ["vig_tiny (random weights)"] * 2
    assert torch.initial_seed() == 2  # the caller's random state is left alone


def test_attn_all_says_which_matrices_are_left_out(tmp_path, image_file, capsys, monkeypatch):
    import vig.viz.commands as viz_commands
    monkeypatch.setattr(viz_commands, "MAX_SAVED_WEIGHTS", 100)  # 64 px: T = 16, each matrix 256 values
    argv = ["viz", "attn", str(image_file), "--model", "vig_tiny", "--img-size", "64", "--token", "all",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "the 16x16 weight matrices (forward, backward, merged) are over 100 values and left out of the .npz" \
        in capsys.readouterr().err
    assert sorted(np.load(next(tmp_path.glob("*.npz")))) == ["map_backward", "map_forward", "map_merged"]
