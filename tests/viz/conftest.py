import numpy as np
import pytest
from PIL import Image, ImageDraw


def _scene(seed, size=(120, 100)):
    """A small synthetic photo: sky, a disc and ground, with a little noise."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(c) for c in rng.integers(20, 200, 3)))
    d = ImageDraw.Draw(im)
    x0, y0 = (int(v) for v in rng.integers(5, 45, 2))
    d.ellipse((x0, y0, x0 + 50, y0 + 45), fill=tuple(int(c) for c in rng.integers(100, 255, 3)))
    d.rectangle((0, 70, size[0], size[1]), fill=tuple(int(c) for c in rng.integers(0, 150, 3)))
    a = np.asarray(im, dtype=np.int16) + rng.integers(-12, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viz_images")
    for i in range(3):
        _scene(i).save(folder / f"scene{i}.png")
    return folder


@pytest.fixture(scope="session")
def image_file(image_dir):
    return image_dir / "scene0.png"


@pytest.fixture
def assert_nontrivial_png():
    return _assert_nontrivial_png


def _assert_nontrivial_png(path):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert a.shape[0] > 100 and a.shape[1] > 100
    assert a.std() > 10
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # a rendered figure, not one colour
