"""Argument errors name the command they belong to, with its usage, and no flag may be abbreviated."""
import argparse

import pytest

from vig.cli import build_parser, main


def parse_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# the required options are given, so argparse reaches the unknown ones (it reports missing ones first)
@pytest.mark.parametrize("command, argv", [
    ("vig train", ["train", "--data", "default"]),
    ("vig eval", ["eval", "--checkpoint", "c.pth", "--data", "default"]),
    ("vig predict", ["predict", "img.png"]),
    ("vig bench", ["bench"]),
    ("vig viz attn", ["viz", "attn", "img.png"]),
    ("vig viz erf", ["viz", "erf", "--images", "imgs"]),
    ("vig det train", ["det", "train", "--out", "o", "--train-images", "i", "--train-ann", "a.json"]),
    ("vig seg eval", ["seg", "eval", "--checkpoint", "c", "--images", "i", "--masks", "m"]),
])
def test_unknown_flag_names_the_innermost_command(command, argv, capsys):
    err = parse_error(argv + ["--epochz", "1"], capsys)
    assert err.startswith(f"usage: {command} ")
    assert f"{command}: error: unrecognized arguments: --epochz 1" in err


def test_unknown_flag_between_commands_names_the_outer_one(capsys):
    err = parse_error(["det", "--foo", "train", "--out", "o", "--train-images", "i", "--train-ann", "a"], capsys)
    assert err.startswith("usage: vig det ") and "vig det: error: unrecognized arguments: --foo" in err


@pytest.mark.parametrize("argv, abbreviated", [
    (["train", "--data", "default", "--epoch", "1"], "--epoch 1"),  # would be --epochs
    (["bench", "--model", "vig_tiny"], "--model vig_tiny"),  # would be --models
    (["det", "train", "--out", "o", "--train-images", "i", "--train-ann", "a", "--head", "8"], "--head 8"),
    (["--vers", "info", "vig_tiny"], "--vers"),  # would be --version
])
def test_abbreviated_flags_are_rejected(argv, abbreviated, capsys):
    assert f"error: unrecognized arguments: {abbreviated}" in parse_error(argv, capsys)


def all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from all_parsers(child)


def test_no_parser_allows_abbreviations():
    # covers commands added later too, at any depth
    parsers = list(all_parsers(build_parser()))
    assert len(parsers) > 10 and not [p.prog for p in parsers if p.allow_abbrev]


def test_predict_refuses_a_folder(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    assert main(["predict", str(tmp_path / "imgs"), "--checkpoint", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert f"vig predict: error: {tmp_path / 'imgs'} is a folder; predict takes one image file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # nothing written


def test_predict_says_a_missing_image_before_reading_the_checkpoint(tmp_path, capsys):
    missing_weights = tmp_path / "w.safetensors"  # not there either: the image is what the user typed first
    assert main(["predict", str(tmp_path / "none.png"), "--checkpoint", str(missing_weights)]) == 2
    assert f"image not found: {tmp_path / 'none.png'}" in capsys.readouterr().err
