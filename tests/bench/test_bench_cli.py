"""`vig bench` end to end on CPU with a tiny input, bad input errors, OOM recorded as a result."""
import json
import os

import pytest
import torch

from vig.bench import timing
from vig.cli import main


def test_vig_bench_cpu_writes_json_and_pngs(tmp_path, monkeypatch):
    monkeypatch.setenv("VIG_FUSED_OFF", "proj_merge")
    rc = main(["bench", "--models", "vig_tiny", "--img-sizes", "32", "--batch-sizes", "2", "--train",
               "--device", "cpu", "--warmup", "0", "--repeats", "1", "--out", str(tmp_path), "--name", "t",
               "--threads", "1"])
    assert rc == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["env"]["torch"] == torch.__version__ and data["env"]["device"] == "cpu"
    assert data["env"]["vig_settings"]["VIG_FUSED_OFF"] == "proj_merge"  # the switches an A/B row ran with
    assert data["env"]["linear_swiglu_kernels"] == "split"  # the MLP's route on this device
    assert data["config"]["dtype"] == "fp32" and data["config"]["batch_sizes"] == [2]
    modes = {p["mode"]: p for p in data["results"]}
    assert set(modes) == {"infer", "train"}
    for p in modes.values():
        assert p["status"] == "ok" and p["img_per_s"] > 0 and p["batch"] == 2 and p["img_size"] == 32
        assert p["gmacs_fwd_bigla"] > 0 and p["gmacs_train"] > 2 * p["gmacs_fwd"]
    for png in ("t_resolution.png", "t_accuracy.png", "t_resolution_train.png"):  # --train: its own figure
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_unknown_model_gets_suggestions(tmp_path, capsys):
    assert main(["bench", "--models", "vig_tinny", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vig_tinny'" in err and "vig_tiny" in err
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--dtype", "fp16"], "fp16 is not benchmarked on CPU"),
    (["--img-sizes", "8"], "at least 16"),
    (["--img-sizes", "100", "--models", "deit_tiny_patch16_224"], "multiples of 16 for deit_tiny_patch16_224"),
    # plain ViG's stem would leave 230's last 6 px unread and time what 224 computes under 230's name
    (["--img-sizes", "230"], "vig_tiny would leave 6 px of a 230 px input unread"),
    (["--batch-sizes", "0"], "batch sizes must be >= 1"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    # 0 or less skipped every point and exited 0 with "no data" plots
    (["--time-limit", "0"], "--time-limit must be > 0 seconds"),
    (["--max-seconds-per-point", "-1"], "--max-seconds-per-point must be > 0 seconds"),
    (["--name", "../escape"], "--name is a file stem inside --out"),
])
def test_bad_input_is_a_clear_usage_error(tmp_path, capsys, argv, message):
    assert main(["bench", "--models", "vig_tiny", "--device", "cpu", "--out", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_out_that_is_a_file_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "afile"
    out.write_text("x")
    argv = ["bench", "--models", "vig_tiny", "--img-sizes", "32", "--batch-sizes", "1", "--device", "cpu",
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not a folder" in err and "Traceback" not in err
    assert out.read_text() == "x"


def test_sizes_a_model_reads_whole():
    from vig.bench.runner import unread_input
    assert unread_input("vig_tiny", [224, 232, 240]) is None  # multiples of its stem's stride 8
    assert "multiples of 8" in unread_input("vig_tiny", [236])
    assert unread_input("deit_tiny_patch16_224", [232]).startswith("image sizes must be multiples of 16")
    assert unread_input("vig_h_tiny", [230]) is None and unread_input("resnet18", [33]) is None


def test_vig_models_take_sizes_a_vit_could_not(tmp_path):
    """vig_fmnist's own 28 px (not a multiple of 16, and 1 channel): ViG and ViG-H take any size; only timm's ViTs
    need whole 16-px patches. Its FLOPs are counted too (no flops_error)."""
    argv = ["bench", "--models", "vig_fmnist", "--img-sizes", "28", "--batch-sizes", "2", "--device", "cpu",
            "--warmup", "0", "--repeats", "1", "--iters", "1", "--no-plots", "--out", str(tmp_path)]
    assert main(argv) == 0
    import glob
    import json
    data = json.load(open(glob.glob(str(tmp_path / "*.json"))[0]))
    assert data["results"][0]["status"] == "ok" and "flops_error" not in json.dumps(data)


def test_out_of_memory_is_recorded_not_raised():
    class Hungry(torch.nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 TiB")
    r = timing.measure(Hungry(), "infer", 2, 32, torch.device("cpu"), "fp32", warmup=1, repeats=1, iters=1)
    assert r["status"] == "oom" and "out of memory" in r["error"]


def test_other_errors_still_raise():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("shape mismatch")
    with pytest.raises(ValueError):
        timing.measure(Broken(), "infer", 2, 32, torch.device("cpu"), "fp32", warmup=1, repeats=1, iters=1)


def test_top_kernels_reports_rows_sorted_by_time():
    from vig.bench.profile import top_kernels
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10))
    model.num_classes = 10
    prof = top_kernels(model, "train", 2, 32, torch.device("cpu"), "fp32", steps=1, warmup=1, top=5)
    times = [r["self_ms_per_step"] for r in prof["top"]]
    assert prof["clock"] == "cpu" and 0 < len(times) <= 5 and times == sorted(times, reverse=True)
    assert any("conv" in r["name"] or "mm" in r["name"] for r in prof["top"])
    assert prof["host_ms_per_step"] is None  # a CPU step has no separate host time


def test_host_functions_finds_the_python_that_a_step_runs():
    from vig.bench.profile import host_functions, model_step

    class Slow(torch.nn.Module):  # a deliberately slow Python forward: it must top the table
        def forward(self, x):
            return sum(float(i) for i in range(20000)) * 0 + x.mean((2, 3)).repeat(1, 4)
    model = Slow()
    model.num_classes = 12
    prof = host_functions(model_step(model, "infer", 2, 8, torch.device("cpu"), "fp32"), torch.device("cpu"),
                          steps=3, top=8)
    rows = prof["top"]
    assert prof["steps"] == 3 and 0 < len(rows) <= 8 and prof["profiled_ms_per_step"] > 0
    assert [r["self_ms_per_step"] for r in rows] == sorted((r["self_ms_per_step"] for r in rows), reverse=True)
    genexpr = [r for r in rows if "test_bench_cli.py" in r["function"] and "genexpr" in r["function"]]
    assert genexpr and genexpr[0]["calls_per_step"] >= 1 and rows.index(genexpr[0]) < 3
    assert all(r["cum_ms_per_step"] >= r["self_ms_per_step"] - 1e-9 for r in rows)


def test_host_and_gpu_ms_need_cuda():
    with pytest.raises(ValueError, match="CUDA launch cost"):
        timing.host_ms(lambda: None, torch.device("cpu"))
    with pytest.raises(ValueError, match="times CUDA kernels"):
        timing.gpu_ms(lambda: None, torch.device("cpu"))


@pytest.mark.parametrize("late", [False, True])
def test_gpu_ms_drops_late_batches(late, monkeypatch):
    """With fake CUDA events: on time, the median of the per-step event times; a sleep that always ends
    before the batch is queued gives two retries with halved batches, then an error."""
    import contextlib

    class FakeEvent:
        made = 0

        def __init__(self, enable_timing=False):
            FakeEvent.made += 1
            self.t = float(FakeEvent.made)

        def record(self):
            pass

        def query(self):
            return late

        def elapsed_time(self, end):
            return end.t - self.t  # consecutive events of one step: 1.0 ms

    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: None)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(timing, "synchronize", lambda d: None)
    calls = []
    if late:
        with pytest.raises(RuntimeError, match="block the host"):
            timing.gpu_ms(lambda: calls.append(1), torch.device("cuda"), iters=20, per_batch=8)
        assert len(calls) == 1 + 8 + 4 + 2  # the untimed step, then batches of 8, 4 and 2
    else:
        assert timing.gpu_ms(lambda: calls.append(1), torch.device("cuda"), iters=20, per_batch=8) == 1.0
        assert len(calls) == 1 + 24  # three batches of 8 for 20 samples


def test_compile_mode_implies_compile_and_is_checked(capsys):
    import argparse

    from vig.bench.commands import add_commands, config_from_args
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["bench", "--models", "vig_tiny", "--device", "cpu", "--compile-mode", "reduce-overhead"])
    cfg = config_from_args(args)
    assert cfg.compile and cfg.compile_mode == "reduce-overhead"
    cfg = config_from_args(parser.parse_args(["bench", "--models", "vig_tiny", "--device", "cpu"]))
    assert not cfg.compile and cfg.compile_mode == "default"
    with pytest.raises(SystemExit) as err:
        parser.parse_args(["bench", "--models", "vig_tiny", "--compile-mode", "fastest"])
    assert err.value.code == 2 and "--compile-mode" in capsys.readouterr().err


def test_point_line_shows_host_time_only_when_measured():
    from vig.bench.runner import format_point
    p = {"model": "vig_tiny", "mode": "infer", "img_size": 224, "batch": 256, "dtype": "bf16", "status": "ok",
         "img_per_s": 17050.0, "ms_per_step": 15.0, "peak_mem_mib": 699.0}
    assert "host" not in format_point(p)
    line = format_point({**p, "host_ms_per_step": 21.6})
    assert line.endswith("host 21.6 of 15.0 ms/step") and "17050.0 img/s" in line
    line = format_point({**p, "host_ms_per_step": 21.6, "gpu_ms_per_step": 7.8})
    assert line.endswith("host 21.6 of 15.0 ms/step  kernels 7.8 ms/step")
    assert "kernels" not in format_point({**p, "gpu_ms_per_step": None, "gpu_ms_error": "late"})


def test_gpu_only_falls_back_to_the_profilers_kernel_sum_when_the_host_cannot_get_ahead(monkeypatch):
    from vig.bench import profile

    def late(*args, **kwargs):
        raise RuntimeError("gpu_ms: the GPU finished its sleep before the host queued the batch")
    monkeypatch.setattr(timing, "gpu_ms", late)
    monkeypatch.setattr(profile, "kernel_ms_per_step", lambda step, device: 20.0)
    out = timing.gpu_only(lambda: None, torch.device("cuda"), 256)
    assert out["gpu_ms_per_step"] == 20.0 and out["gpu_img_per_s"] == 12800.0
    assert out["gpu_ms_clock"] == "profiler_kernel_sum" and "finished its sleep" in out["gpu_ms_error"]

    def broken(step, device):
        raise RuntimeError("CUPTI unavailable")
    monkeypatch.setattr(profile, "kernel_ms_per_step", broken)
    out = timing.gpu_only(lambda: None, torch.device("cuda"), 256)
    assert out["gpu_ms_per_step"] is None and "finished its sleep" in out["gpu_ms_error"]
    assert "CUPTI unavailable" in out["gpu_ms_error"] and "gpu_img_per_s" not in out
    monkeypatch.setattr(timing, "gpu_ms", lambda *a, **k: 8.0)
    assert timing.gpu_only(lambda: None, torch.device("cuda"), 256) == {
        "gpu_ms_per_step": 8.0, "gpu_img_per_s": 32000.0, "gpu_ms_clock": "cuda_events"}


def test_kernel_sum_counts_device_rows_once_and_refuses_a_cpu_step():
    from types import SimpleNamespace

    from vig.bench import profile
    cuda_row = torch.autograd.DeviceType.CUDA
    events = [SimpleNamespace(key="gemm", self_device_time_total=300.0, device_type=cuda_row),
              SimpleNamespace(key="aten::mm", self_device_time_total=300.0, device_type=torch.autograd.DeviceType.CPU),
              SimpleNamespace(key="norm", self_device_time_total=120.0, device_type=cuda_row),
              SimpleNamespace(key="idle", self_device_time_total=0.0, device_type=cuda_row)]
    rows, total = profile.kernel_rows(events, cuda=True)
    assert [e.key for e in rows] == ["gemm", "norm"] and total == 420.0
    with pytest.raises(ValueError, match="CUDA kernels; got device cpu"):
        profile.kernel_ms_per_step(lambda: None, torch.device("cpu"))


def test_each_resolution_compiles_its_own_static_graph(monkeypatch):
    """A second resolution of one model must not be timed on a dynamic-shape recompile of the first's graph."""
    from vig.bench import runner
    calls = []
    monkeypatch.setattr(runner, "create_model", lambda name, img, device: torch.nn.Linear(2, 2))
    monkeypatch.setattr(torch._dynamo, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    monkeypatch.setattr(timing, "measure", lambda *a, **k: {"status": "ok", "img_per_s": 1.0, "ms_per_step": 1.0})
    cfg = runner.BenchConfig(models=["vig_tiny"], img_sizes=[32, 64], batch_sizes=[2], modes=("infer",),
                             compile=True, compile_mode="reduce-overhead", count_flops=False, device="cpu")
    out = runner._run(cfg, lambda line: None, None)
    assert [p["status"] for p in out["results"]] == ["ok", "ok"]
    assert calls == ["reset", {"mode": "reduce-overhead", "dynamic": False}] * 2


def test_results_name_the_code_that_made_them(tmp_path):
    """The source digest changes with any package source and ignores caches; git's dirty flag says when the
    commit alone does not name the code."""
    from vig.bench.provenance import code_identity, source_digest
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    before = source_digest(str(pkg))
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (pkg / "notes.txt").write_text("not code")
    assert source_digest(str(pkg)) == before
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert source_digest(str(pkg)) != before
    ident = code_identity()
    assert len(ident["vig_source_sha256"]) == 16
    assert ident["git_dirty"] in (None, True, False) and (ident["git_commit"] is None) == (ident["git_dirty"] is None)


def test_cuda_timing_flags_are_set_for_cuda_only():
    """Every timing and kernel table on CUDA runs with cuDNN's autotuner and TF32 (runner.set_cuda_timing_flags);
    a CPU run leaves torch's settings alone. (cuBLAS's flag is a property of torch's module object, which
    monkeypatch cannot restore: the flags are saved and put back by hand.)"""
    from vig.bench import runner
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul

    def flags():
        return cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
    saved = flags()
    try:
        cudnn.benchmark = cudnn.allow_tf32 = matmul.allow_tf32 = False
        runner.set_cuda_timing_flags(torch.device("cpu"))
        assert flags() == (False, False, False)
        runner.set_cuda_timing_flags(torch.device("cuda"))
        assert flags() == (True, True, True)
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernel_sum_agrees_with_event_timing_on_a_gpu_bound_step():
    from vig.bench import profile
    device = torch.device("cuda")
    a = torch.randn(4096, 4096, device=device)

    def step():
        for _ in range(4):
            a @ a
    events_ms = timing.gpu_ms(step, device, iters=10)
    summed_ms = profile.kernel_ms_per_step(step, device)
    assert 0.8 * events_ms <= summed_ms <= 1.2 * events_ms, (summed_ms, events_ms)


def test_an_interrupted_run_keeps_the_points_it_finished(tmp_path, capsys, monkeypatch):
    """Ctrl-C: one line instead of a traceback (exit 130), the finished points in NAME.json.partial and no NAME.json;
    a finished run leaves no .partial behind."""
    calls = []

    def measure(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"status": "ok", "img_per_s": 1.0, "ms_per_step": 1.0}
    monkeypatch.setattr(timing, "measure", measure)
    argv = ["bench", "--models", "vig_tiny", "--img-sizes", "32", "64", "--batch-sizes", "1", "--device", "cpu",
            "--no-flops", "--no-plots", "--out", str(tmp_path), "--name", "t"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "vig bench: interrupted" in err and "t.json.partial" in err
    partial = json.loads((tmp_path / "t.json.partial").read_text())
    assert partial["complete"] is False and [p["img_size"] for p in partial["results"]] == [32]
    assert not (tmp_path / "t.json").exists()
    calls.append(1)  # past the interrupt: the next run finishes
    assert main(argv) == 0
    assert (tmp_path / "t.json").exists() and not (tmp_path / "t.json.partial").exists()


def test_a_rerun_removes_the_figures_it_does_not_redraw(tmp_path, capsys):
    """Figures of the same --name left by an earlier run would sit beside a JSON of other numbers: an inference-only
    rerun removes the training figure, a --no-plots rerun all of them (and says so)."""
    def bench(*extra):
        argv = ["bench", "--models", "vig_fmnist", "--img-sizes", "28", "--batch-sizes", "2", "--device", "cpu",
                "--warmup", "0", "--repeats", "1", "--iters", "1", "--no-flops", "--threads", "1",
                "--out", str(tmp_path), "--name", "t", *extra]
        assert main(argv) == 0
        return sorted(f for f in os.listdir(tmp_path) if f.endswith(".png"))
    assert bench("--train") == ["t_accuracy.png", "t_resolution.png", "t_resolution_train.png"]
    assert bench() == ["t_accuracy.png", "t_resolution.png"]
    assert "removed" in capsys.readouterr().out
    (tmp_path / "other_resolution.png").write_bytes(b"not ours")
    assert bench("--no-plots") == ["other_resolution.png"]


def test_a_relative_out_keeps_the_figures_it_just_drew(tmp_path, monkeypatch, capsys):
    """The figures' written paths are absolute: against a relative --out (the default ./vig_bench) every one looked
    stale, and the run deleted what it had just drawn."""
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "--models", "vig_fmnist", "--img-sizes", "28", "--batch-sizes", "2", "--device", "cpu",
            "--warmup", "0", "--repeats", "1", "--iters", "1", "--no-flops", "--threads", "1", "--name", "t"]
    assert main(argv) == 0
    assert sorted(os.listdir(tmp_path / "vig_bench")) == ["t.json", "t_accuracy.png", "t_resolution.png"]
    assert "removed" not in capsys.readouterr().out
