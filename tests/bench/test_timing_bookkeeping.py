"""timing's pure-Python bookkeeping on a fake clock: per-call seconds, the time budget, the median and img/s. Each
step advances the clock by a known amount, so every number below is exact."""
import pytest
import torch

from vig.bench import timing
from vig.bench.runner import BenchConfig, batch_for


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", c)
    return c


def test_time_steps_reports_seconds_per_call_and_stops_at_the_budget(clock):
    costs = iter([0.5] * 2 + [0.01] * 100)  # two warmup steps, then 10 ms a step

    def step():
        clock.now += next(costs)
    per_call, warm = timing.time_steps(step, torch.device("cpu"), warmup=2, repeats=10, iters=5, max_seconds=0.12)
    assert warm == pytest.approx(1.0)
    # blocks of 5 calls take 0.05 s: after the third (0.15 s spent > 0.12) no more blocks start
    assert per_call == pytest.approx([0.01] * 3)


def test_summarize_uses_the_median_block():
    s = timing.summarize([0.010, 0.030, 0.011, 0.012, 0.100], batch=32)
    assert s["ms_per_step"] == pytest.approx(12.0)  # median, not the mean (32.6): one slow block must not count
    assert s["img_per_s"] == pytest.approx(32 / 0.012)
    assert s["ms_per_step_min"] == pytest.approx(10.0) and s["ms_per_step_max"] == pytest.approx(100.0)
    assert s["timed_blocks"] == 5


def test_scaled_batches_keep_the_pixels_per_step_above_224():
    cfg = BenchConfig(models=[], img_sizes=[], batch_sizes=[], scale_batch=True)
    assert batch_for(cfg, 64, 448) == 16  # (224 / 448) ** 2 = 1/4
    assert batch_for(cfg, 64, 112) == 64  # never grown for small images
    assert batch_for(cfg, 3, 2048) == 1   # at least one image
    assert batch_for(BenchConfig(models=[], img_sizes=[], batch_sizes=[]), 64, 448) == 64  # off by default


def test_points_past_the_time_limit_record_the_batch_they_would_have_run():
    from vig.bench.runner import run
    cfg = BenchConfig(models=["vig_tiny"], img_sizes=[448], batch_sizes=[64], modes=("infer",), device="cpu",
                      dtype="fp32", scale_batch=True, time_limit_s=-1.0, count_flops=False)
    (point,) = run(cfg, log=lambda *_: None)["results"]
    assert point["status"] == "skipped" and point["reason"] == "time limit"
    assert point["batch"] == 16  # the scaled batch, as a measured point at 448 px records it
