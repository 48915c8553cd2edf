"""`vig viz attn` / `vig viz erf` on the 1-channel default model vig_fmnist: to_tensor normalised with a
3-channel view ("shape '[3, 1, 1]' is invalid"); now the model gets the grayscale image, the figure the RGB one."""
import numpy as np
import torch

import vig.models  # noqa: F401  (registers the models)
from vig.cli import main
from vig.viz.io import load_image, to_tensor


def test_to_tensor_follows_the_normalisation_channels(image_file):
    from PIL import Image
    rgb = load_image(image_file, 28)
    x = to_tensor(rgb, (0.5,), (0.25,))
    assert x.shape == (1, 1, 28, 28)
    gray = np.asarray(Image.fromarray((rgb * 255).round().astype(np.uint8)).convert("L"), dtype=np.float32) / 255
    torch.testing.assert_close(x[0, 0] * 0.25 + 0.5, torch.from_numpy(gray), atol=1 / 255, rtol=0)
    assert to_tensor(rgb).shape == (1, 3, 28, 28)


def test_attn_and_erf_run_on_vig_fmnist(tmp_path, image_file, image_dir, assert_nontrivial_png):
    assert main(["viz", "attn", str(image_file), "--model", "vig_fmnist", "--img-size", "32",
                 "--out", str(tmp_path)]) == 0
    assert main(["viz", "erf", "--model", "vig_fmnist", "--images", str(image_dir), "--num-images", "2",
                 "--img-size", "32", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("attn_vig_fmnist") and n.endswith(".png") for n in names)
    assert "erf_vig_fmnist.npy" in names and "erf_compare.png" in names
    assert np.load(tmp_path / "erf_vig_fmnist.npy").shape == (32, 32)
    assert_nontrivial_png(tmp_path / "erf_compare.png")
