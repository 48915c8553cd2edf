"""--img-size with a timm model that has no fixed input size (a CNN): it sizes the data alone. The model was built
with img_size=... and failed ("ResNet.__init__() got an unexpected keyword argument 'img_size'")."""
import pytest

from trainkit import folder_args, image_folder, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.errors import UsageError
from vig.train import setup


def test_create_model_passes_img_size_only_where_it_is_taken():
    assert setup.create_model("resnet10t", num_classes=3, img_size=48).num_classes == 3
    assert setup.create_model("vig_fmnist", img_size=32).patch_embed.img_size[-1] == 32
    with pytest.raises(UsageError, match="no_such_option"):  # other bad kwargs still fail, named
        setup.create_model("resnet10t", img_size=48, model_kwargs={"no_such_option": 1})


def test_vig_train_a_cnn_at_another_size(vig_cli, tmp_path):
    data = image_folder(tmp_path / "ds")
    argv = folder_args(data, tmp_path / "r", "--img-size", "48")
    argv[argv.index("vig_fmnist")] = "resnet10t"
    code, out, err = vig_cli(argv)
    assert code == 0, err
    assert "input (3, 48, 48)" in out
