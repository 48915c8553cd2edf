"""--model-kwargs reads KEY=VALUE items and JSON objects alike in every command (train took only the first,
det / seg only the second)."""
import pytest

from trainkit import tiny_args, vig_cli  # noqa: F401  (vig_cli is a fixture)
from vig.errors import UsageError
from vig.models.model_kwargs import parse_model_kwargs


def test_both_forms_mix_and_values_keep_their_types():
    got = parse_model_kwargs(["depth=2", '{"embed-dim": 96, "drop_path_rate": 0.1}', "layers=[2, 2]", "flag=true"])
    assert got == {"depth": 2, "embed_dim": 96, "drop_path_rate": 0.1, "layers": [2, 2], "flag": True}


@pytest.mark.parametrize("item, says", [("depth", "expects KEY=VALUE or a JSON object, got 'depth'"),
                                        ("=2", "got '=2'"), ("[1]", "got '[1]'"),
                                        ('{"depth": 2', "is not a valid JSON object")])
def test_bad_items_name_themselves(item, says):
    with pytest.raises(UsageError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse_model_kwargs([item])


def test_train_takes_the_json_form(vig_cli, tmp_path):
    code, _, err = vig_cli(tiny_args(tmp_path / "run", "--model-kwargs", '{"depth": 1}', batch=16, limit=16))
    assert code == 0, err
    from vig.models.checkpoint import saved_run_info
    assert saved_run_info(tmp_path / "run" / "best.safetensors")["model_kwargs"] == {"depth": 1}


def test_seg_and_det_parse_the_key_value_form():
    import argparse

    from vig.downstream.commands import _backbone_and_kwargs
    args = argparse.Namespace(pretrained=None, backbone="vig_tiny", model_kwargs=["depth=1", "embed_dim=64"])
    assert _backbone_and_kwargs(args) == ("vig_tiny", {"depth": 1, "embed_dim": 64})
