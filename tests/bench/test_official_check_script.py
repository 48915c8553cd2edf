"""benchmarks/official_check/check_official.py without the official code: a missing folder, or one that is not a
hustvl/ViG checkout, is refused with argparse's status 2 and a message naming the folder, before any output is
written (the check itself needs a clone of github.com/hustvl/ViG, which CI does not have)."""
import pytest
from bench_scripts import load_script


def _refuse(folder, out, monkeypatch, capsys):
    script = load_script("check_official", "official_check")
    monkeypatch.setattr("sys.argv", ["check_official.py", "--official", str(folder), "--out", str(out)])
    with pytest.raises(SystemExit) as err:
        script.main()
    assert err.value.code == 2
    assert not out.exists()
    return capsys.readouterr().err


def test_missing_folder(tmp_path, monkeypatch, capsys):
    err = _refuse(tmp_path / "no_such_ViG", tmp_path / "check.json", monkeypatch, capsys)
    assert f"--official {tmp_path / 'no_such_ViG'}: no such folder" in err


def test_folder_without_classification(tmp_path, monkeypatch, capsys):
    err = _refuse(tmp_path, tmp_path / "check.json", monkeypatch, capsys)
    assert f"--official {tmp_path}: not a hustvl/ViG checkout (no classification/config.py)" in err


def test_classification_folder_itself(tmp_path, monkeypatch, capsys):
    # the likeliest mistake: pointing at classification/ rather than the checkout above it
    (tmp_path / "classification" / "models").mkdir(parents=True)
    (tmp_path / "classification" / "config.py").write_text("")
    err = _refuse(tmp_path / "classification", tmp_path / "check.json", monkeypatch, capsys)
    assert f"--official {tmp_path / 'classification'}: not a hustvl/ViG checkout" in err
    assert "the folder that contains classification/" in err


def test_incomplete_checkout_names_the_missing_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "classification" / "models").mkdir(parents=True)
    (tmp_path / "classification" / "config.py").write_text("")
    err = _refuse(tmp_path, tmp_path / "check.json", monkeypatch, capsys)
    assert "no classification/models/vig.py" in err
