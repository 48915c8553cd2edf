"""Top kernels of one inference or training step (torch.profiler), as JSON-ready rows: where the time goes
when a throughput target is missed."""
import cProfile
import os
import pstats

import torch
from torch.profiler import ProfilerActivity, profile

from vig.bench import timing


def _self_time_us(event, cuda):
    if cuda:
        for attr in ("self_device_time_total", "self_cuda_time_total"):
            if hasattr(event, attr):
                return getattr(event, attr)
    return event.self_cpu_time_total


def _is_kernel_row(event, cuda):
    """On CUDA keep the device-side rows (kernels, memcpy, memset) only: an op row such as aten::mm
    also carries its kernels' device time, and counting both doubled the step's total."""
    if not cuda:
        return True
    return getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA


def model_step(model, mode, batch, img_size, device, dtype_name):
    """One inference or training step of `model` on random images, as a closure (timing.py's steps)."""
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    if mode == "infer":
        model.eval()
        return timing.inference_step(model, x, device, dtype_name)
    model.train()
    y = torch.randint(0, getattr(model, "num_classes", 1000), (batch,), device=device)
    return timing.train_step(model, x, y, device, dtype_name)


def kernel_rows(events, cuda):
    """The profiler's averaged rows that count toward a step's kernel time (self time > 0), and their total in us."""
    rows = [e for e in events if _self_time_us(e, cuda) > 0 and _is_kernel_row(e, cuda)]
    return rows, sum(_self_time_us(e, cuda) for e in rows)


def _profiled(step, device, steps):
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        timing.synchronize(device)
    return kernel_rows(prof.key_averages(), cuda)


def kernel_ms_per_step(step, device, *, steps=3):
    """Summed device time of one step's kernels (torch.profiler, one untimed step first): the GPU time a step needs
    when the host keeps up. For steps that queue more launches than the driver buffers, where timing.gpu_ms's
    sleep-ahead cannot keep the host out (kernels of one stream do not overlap, so their sum is the busy time)."""
    if device.type != "cuda":
        raise ValueError(f"kernel_ms_per_step sums CUDA kernels; got device {device}")
    step()
    timing.synchronize(device)
    _, total_us = _profiled(step, device, steps)
    return total_us / 1e3 / steps


def top_kernels(model, mode, batch, img_size, device, dtype_name, *, steps=3, warmup=2, top=15):
    """Profile `steps` steps after `warmup`; rows sorted by self time (device time on CUDA), per step."""
    cuda = device.type == "cuda"
    step = model_step(model, mode, batch, img_size, device, dtype_name)
    for _ in range(warmup):
        step()
    timing.synchronize(device)
    host = timing.host_ms(step, device) if cuda else None
    events, total = _profiled(step, device, steps)
    events.sort(key=lambda e: -_self_time_us(e, cuda))
    rows = [{"name": e.key[:120], "calls_per_step": e.count / steps,
             "self_ms_per_step": _self_time_us(e, cuda) / 1e3 / steps,
             "pct": 100.0 * _self_time_us(e, cuda) / total if total else 0.0} for e in events[:top]]
    model.zero_grad(set_to_none=True)
    return {"mode": mode, "batch": batch, "img_size": img_size, "dtype": dtype_name,
            "clock": "device" if cuda else "cpu", "total_ms_per_step": total / 1e3 / steps,
            "host_ms_per_step": host,
            "kernels_per_step": sum(e.count for e in events) / steps, "top": rows}


def _site(key):
    """cProfile's (file, line, function) as 'package/file.py:line(function)'; built-ins keep their name."""
    path, line, func = key
    if path == "~":
        return func
    return f"{os.path.join(*path.split(os.sep)[-2:])}:{line}({func})"


def host_functions(step, device, *, steps=5, warmup=1, top=30):
    """Host (Python) time of `steps` calls of step() under cProfile, per step: the functions with the most
    self time, and each one's cumulative time. cProfile slows Python code down (~1.5x), so read proportions.
    The device is synchronised after the calls, outside the profile; a step that blocks on the GPU shows the
    wait in the function that blocks. Only this thread is seen: on CUDA the autograd engine runs backward
    functions on its own device thread, so for training steps this covers the forward, loss and optimizer."""
    for _ in range(warmup):  # e.g. the optimizer's lazy state set-up, which is not per-step cost
        step()
    timing.synchronize(device)
    prof = cProfile.Profile()
    prof.enable()
    try:
        for _ in range(steps):
            step()
    finally:  # a failing step (OOM) must not leave the profiler on for the next model
        prof.disable()
    timing.synchronize(device)
    stats = pstats.Stats(prof).stats  # {(file, line, func): (calls, prim calls, tottime, cumtime, callers)}
    total = sum(v[2] for v in stats.values())
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    return {"steps": steps, "profiled_ms_per_step": total * 1e3 / steps,
            "top": [{"function": _site(k), "calls_per_step": v[0] / steps, "self_ms_per_step": v[2] * 1e3 / steps,
                     "cum_ms_per_step": v[3] * 1e3 / steps} for k, v in rows]}
