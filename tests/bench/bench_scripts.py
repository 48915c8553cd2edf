"""Helpers for the tests of benchmarks/*.py scripts (this folder is on sys.path: pytest's prepend import mode, and a
test file's own directory when it runs as an interpreter child script)."""
import importlib.util
import os

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks")


def load_script(name, folder=""):
    """benchmarks/<folder>/<name>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_refuses_without_cuda(script, out, monkeypatch, capsys):
    """`script.main()` with --out `out` exits with argparse's status 2, names the missing CUDA device, writes nothing."""
    monkeypatch.setattr("sys.argv", [f"{script.__name__}.py", "--out", str(out)])
    with pytest.raises(SystemExit) as err:
        script.main()
    assert err.value.code == 2 and "no CUDA device" in capsys.readouterr().err
    assert not out.exists()
