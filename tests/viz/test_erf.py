"""`vig viz erf`: the measure on models with a known answer, the CLI outputs, and errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from vig.cli import main
from vig.viz.erf import area_ratio, erf_map, scale_erf, summarise
from vig.viz.model import feature_map


class OneConv(nn.Module):
    """forward_features = one 3x3 conv (no padding): the centre output sees exactly a 3x3 pixel box."""

    def __init__(self, tokens=False, prefix=0):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.tokens, self.num_prefix_tokens = tokens, prefix

    def forward_features(self, x):
        y = self.conv(x)
        if not self.tokens:
            return y
        y = y.flatten(2).transpose(1, 2)  # ViT-style [B, N, C] with prefix tokens in front
        return torch.cat([y.mean(1, keepdim=True).expand(-1, self.num_prefix_tokens, -1), y], 1)


@pytest.mark.parametrize("tokens,prefix", [(False, 0), (True, 1)])
def test_erf_of_one_conv_is_its_kernel_box(image_dir, tokens, prefix):
    torch.manual_seed(0)
    model = OneConv(tokens, prefix).eval()
    images = sorted(image_dir.glob("*.png"))
    raw = erf_map(model, images, 33, batch_size=2)  # conv output 31x31, centre (15, 15) = pixels 15..17
    assert raw.shape == (33, 33) and raw.dtype == np.float64
    box = np.zeros((33, 33), bool)
    box[15:18, 15:18] = True
    assert np.all(raw[box] > 0) and np.all(raw[~box] == 0)
    # the same with a batch of one: batching must not mix samples
    assert np.allclose(erf_map(model, images, 33, batch_size=1), raw)


class ConvThenLayerNorm(nn.Module):
    """Ends in a plain LayerNorm over channels, like a freshly initialised ViT: the channel sum of
    its output is constant, so only the ReLU'd centre response has a gradient."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, padding=2)

    def forward_features(self, x):
        y = self.conv(x).flatten(2).transpose(1, 2)
        return nn.functional.layer_norm(y, (8,))


def test_erf_of_layernorm_output_is_not_zero(image_dir):
    torch.manual_seed(0)
    raw = erf_map(ConvThenLayerNorm().eval(), sorted(image_dir.glob("*.png")), 17)
    assert raw[6:11, 6:11].min() > 0 and raw[:6].max() == 0  # the 5x5 box around pixel (8, 8) only


def test_feature_map_drops_prefix_tokens():
    model = OneConv(tokens=True, prefix=2)
    x = torch.randn(1, 3, 7, 7)
    assert torch.equal(feature_map(model, x), model.conv(x))


def test_area_ratio_on_known_maps():
    delta = np.zeros((21, 21))
    delta[10, 10] = 1.0
    assert area_ratio(delta, 0.5) == (1, 1 / 441)
    uniform = np.ones((21, 21))
    side, ratio = area_ratio(uniform, 0.5)
    assert side == 15 and ratio == pytest.approx(225 / 441)  # smallest centred square above half
    scaled = scale_erf(np.arange(16.0).reshape(4, 4))
    assert scaled.max() == 1.0 and scaled.min() == 0.0
    s = summarise(delta)
    assert s["peak_px"] == [10, 10] and s["peak_distance_to_centre_px"] == 0.0
    assert set(s["high_contribution_area"]) == {"0.2", "0.3", "0.5", "0.99"}


def test_erf_cli_vig_vs_deit(tmp_path, image_dir, assert_nontrivial_png):
    torch.manual_seed(0)
    out = tmp_path / "out"
    argv = ["viz", "erf", "--model", "vig_tiny", "--compare", "deit_tiny_patch16_224", "--images", str(image_dir),
            "--img-size", "80", "--num-images", "2", "--batch-size", "2", "--out", str(out)]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["erf_compare.png", "erf_summary.json", "erf_vig_tiny.npy", "erf_vig_tiny_scaled.npy",
                            "erf_deit_tiny_patch16_224.npy", "erf_deit_tiny_patch16_224_scaled.npy"])
    assert_nontrivial_png(out / "erf_compare.png")
    summary = json.loads((out / "erf_summary.json").read_text())
    assert summary["num_images"] == 2 and summary["img_size"] == 80
    for name in ("vig_tiny", "deit_tiny_patch16_224"):
        raw = np.load(out / f"erf_{name}.npy")
        scaled = np.load(out / f"erf_{name}_scaled.npy")
        assert raw.shape == scaled.shape == (80, 80) and raw.max() > 0
        assert scaled.max() == pytest.approx(1.0) and np.allclose(scaled, scale_erf(raw))
    # peaked near the centre: the central quarter of the area holds well over a quarter of the
    # contribution, and more per pixel than any corner
    raw = np.load(out / "erf_vig_tiny.npy")
    assert raw[20:60, 20:60].sum() / raw.sum() > 0.35
    centre_density = raw[20:60, 20:60].mean()
    for corner in (raw[:20, :20], raw[:20, -20:], raw[-20:, :20], raw[-20:, -20:]):
        assert corner.mean() < centre_density
    px, py = summary["models"]["vig_tiny"]["peak_px"]
    assert 20 <= px < 60 and 20 <= py < 60


@pytest.mark.parametrize("argv_tail,needle", [
    (["--images", "MISSING"], "--images: folder not found"),
    (["--images", "EMPTY"], "--images: no image files"),
    (["--images", "IMAGES", "--compare", "resnet_does_not_exist"], "--compare: unknown model 'resnet_does_not_exist'"),
    (["--images", "IMAGES", "--compare", "resnet18=MISSING"], "--compare: file not found"),
    (["--images", "IMAGES", "--compare", "vig_tiny"], "--compare: vig_tiny is listed twice"),
    (["--images", "IMAGES", "--compare", "="], "--compare: '=' names no model"),
    (["--images", "IMAGES", "--compare", "=MISSING"], "checkpoint file not found"),
    (["--images", "IMAGES", "--num-images", "0"], "--num-images and --batch-size must be at least 1"),
    # a bare AssertionError from timm's patch embedding, after vig_tiny's maps had been computed
    (["--images", "IMAGES", "--compare", "deit_tiny_patch16_224", "--img-size", "56"],
     "--img-size: image sizes must be multiples of 16 for deit_tiny_patch16_224"),
])
def test_erf_bad_arguments_write_nothing(tmp_path, image_dir, capsys, argv_tail, needle):
    (tmp_path / "EMPTY").mkdir()
    subst = {"MISSING": str(tmp_path / "missing"), "EMPTY": str(tmp_path / "EMPTY"), "IMAGES": str(image_dir)}
    out = tmp_path / "out"
    argv = ["viz", "erf", "--model", "vig_tiny", "--img-size", "48", "--out", str(out)]
    assert main(argv + [subst.get(a, a) for a in argv_tail]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_write_files_leaves_nothing_on_failure(tmp_path):
    from vig.viz.io import write_files

    with pytest.raises(TypeError):  # the second payload cannot be written: the first must not appear
        write_files(tmp_path, {"a.npy": b"123", "b.png": object()})
    assert list(tmp_path.iterdir()) == []
    assert [p.name for p in write_files(tmp_path, {"a.npy": b"1", "b.png": b"2"})] == ["a.npy", "b.png"]
    assert (tmp_path / "b.png").read_bytes() == b"2"


def test_erf_notes_fewer_images_and_random_weights(tmp_path, image_dir, capsys):
    out = tmp_path / "out"
    argv = ["viz", "erf", "--model", "vig_tiny", "--images", str(image_dir), "--num-images", "100",
            "--img-size", "32", "--batch-size", "3", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"note: --num-images 100, but {image_dir} holds 3 images; using 3" in err
    assert "vig_tiny: random weights" in err
    summary = json.loads((out / "erf_summary.json").read_text())
    assert summary["num_images"] == 3 and summary["models"]["vig_tiny"]["random_weights"] is True


def test_erf_figure_titles_say_random_weights():
    from vig.viz.erf import erf_figure
    area = {"high_contribution_area": {"0.5": {"area_ratio": 0.25}}}
    fig = erf_figure({"a": np.ones((8, 8)), "b": np.ones((8, 8))},
                     {"a": {**area, "random_weights": True}, "b": {**area, "random_weights": False}})
    assert fig.axes[0].get_title().startswith("a (random weights)")
    assert "random" not in fig.axes[1].get_title()


def test_erf_rerun_removes_maps_of_models_it_no_longer_compares(tmp_path, image_dir, capsys):
    out = tmp_path / "out"
    base = ["viz", "erf", "--model", "vig_tiny", "--images", str(image_dir), "--num-images", "1", "--img-size", "32",
            "--batch-size", "1", "--out", str(out)]
    assert main(base + ["--compare", "deit_tiny_patch16_224"]) == 0
    (out / "notes.txt").write_text("mine")  # not a map: kept
    (out / "erf_mine.npy").write_bytes(b"mine")  # a map the replaced summary does not list: kept
    assert main(base) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["erf_compare.png", "erf_summary.json", "erf_vig_tiny.npy", "erf_vig_tiny_scaled.npy",
                            "notes.txt", "erf_mine.npy"])
    assert "erf_deit_tiny_patch16_224.npy (the replaced summary's map" in capsys.readouterr().err


class OffCentreConv(nn.Module):
    """One 3x3 conv whose output grid is cropped to rows 0..19 and columns 5..24, so the centre unit (row 10, column
    15 of the conv) sees rows 10..12 and columns 15..17 of a 33 px image: 5 px above the image centre (16, 16) and
    on it across (as ResNet's centre unit at 224 px sits at pixel 96, plain ViG's and DeiT's half a token off). The
    ERF is a 3x3 box off the middle in y only, so swapped x and y would show."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward_features(self, x):
        return self.conv(x)[:, :, :20, 5:25]


def test_area_ratios_are_centred_on_the_measured_unit(image_dir):
    torch.manual_seed(0)
    raw = erf_map(OffCentreConv().eval(), sorted(image_dir.glob("*.png")), 33)
    assert raw[10:13, 15:18].min() > 0 and raw.sum() == raw[10:13, 15:18].sum()
    s = summarise(raw)
    assert s["area_centre_px"] == [16, 11]  # [x, y]
    # the whole ERF is the 3x3 box: no square needs more than 3 px (centred on the image centre it took 13)
    assert s["high_contribution_area"]["0.99"] == {"side_px": 3, "area_ratio": 9 / 33 ** 2}
    # an image-centred map keeps the image-centred squares
    assert summarise(np.ones((21, 21)))["area_centre_px"] == [10, 10]
