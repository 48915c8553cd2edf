"""vig.bench.micro.micro_main, the micro-benchmarks' command line: the report's fields, a script's own options, an
unknown model refused before anything runs; and bench_stem.py's refusal without CUDA."""
import json

import pytest
import torch
from bench_scripts import assert_refuses_without_cuda, load_script

from vig.bench.micro import micro_main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_stem_refuses_without_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    assert_refuses_without_cuda(load_script("bench_stem"), tmp_path / "stem.json", monkeypatch, capsys)


def _fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")


def test_report_holds_each_model_row_and_the_header(tmp_path, monkeypatch, capsys):
    _fake_cuda(monkeypatch)
    out = tmp_path / "r.json"
    monkeypatch.setattr("sys.argv", ["x.py", "--out", str(out), "--models", "B", "--batch", "8"])
    seen = []

    def case(width, dev, args):
        seen.append((width, dev.type, args.batch))
        return {"ms": 1.0}
    micro_main(case, {"A": 1, "B": 2}, lambda args: {"batch": args.batch},
               add_args=lambda ap: ap.add_argument("--batch", type=int, default=256))
    report = json.loads(out.read_text())
    assert seen == [(2, "cuda", 8)]
    assert report["gpu"] == "Fake GPU" and report["batch"] == 8 and report["models"] == {"B": {"ms": 1.0}}
    assert "B {" in capsys.readouterr().out


def test_unknown_model_is_refused_before_any_case(tmp_path, monkeypatch, capsys):
    _fake_cuda(monkeypatch)
    monkeypatch.setattr("sys.argv", ["x.py", "--out", str(tmp_path / "r.json"), "--models", "C"])
    with pytest.raises(SystemExit) as err:
        micro_main(lambda *a: pytest.fail("ran a case"), {"A": 1}, {})
    assert err.value.code == 2 and "invalid choice: 'C'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
