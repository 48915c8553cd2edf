"""Honest timing of inference and training steps: warmup, synchronised timers, median of repeats,
peak memory, and out-of-memory recorded as a result instead of a crash."""
import contextlib
import gc
import statistics
import time

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, dtype_name):
    dtype = DTYPES[dtype_name]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Elapsed seconds of a block: CUDA events on GPU (no host-side launch jitter), perf_counter on CPU."""

    def __init__(self, device):
        self.device = device
        self.seconds = None

    def __enter__(self):
        if self.device.type == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self._t0
        return False


def is_oom(err):
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device):
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device):
    """Peak allocated memory since the last reset (CUDA only: the CPU allocator keeps no such counter)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def peak_extra_mib(step, device):
    """MiB a CUDA step allocates at its peak beyond what was allocated before it (its inputs and outputs' owners
    excluded): the memory a benchmarked call adds."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def host_ms(step, device, *, iters=5, gpu_busy_cycles=100_000_000):
    """Median host (CPU) milliseconds of one step while the GPU is still busy with a sleep kernel
    queued before it: Python, dispatch and launch cost alone, with no waiting on the GPU. When it
    exceeds the step's GPU time the step is host-bound. (~50 ms of sleep on an H100 covers a step's
    host work; a step that queues more launches than the driver buffers would block and read high.)"""
    if device.type != "cuda":
        raise ValueError(f"host_ms measures CUDA launch cost; got device {device}")
    times = []
    for _ in range(iters):
        synchronize(device)
        torch.cuda._sleep(gpu_busy_cycles)
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    synchronize(device)
    return statistics.median(times)


def gpu_ms(step, device, *, iters=50, per_batch=10, gpu_busy_cycles=100_000_000):
    """Median GPU milliseconds of one step, host cost excluded: each batch of `per_batch` steps is
    queued behind a sleep kernel, so every step's kernels run back to back, and CUDA events around
    each step time its GPU work alone. A batch queued after its sleep ended would include host gaps: it
    is dropped and retried with a 4x longer sleep and half the batch (a step that queues more launches
    than the driver buffers blocks the host whatever the sleep), twice, then this raises. One untimed
    step runs first, so compilation or autotuning is not inside a batch."""
    if device.type != "cuda":
        raise ValueError(f"gpu_ms times CUDA kernels; got device {device}")
    with torch.cuda.device(device):
        step()
        synchronize(device)
        times, retries = [], 0
        while len(times) < iters:
            torch.cuda._sleep(gpu_busy_cycles)
            asleep = torch.cuda.Event()
            asleep.record()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(per_batch)]
            for a, b in events:
                a.record()
                step()
                b.record()
            late = asleep.query()
            synchronize(device)
            if late:
                retries += 1
                if retries > 2:
                    raise RuntimeError("gpu_ms: the GPU finished its sleep before the host queued the batch, "
                                       "also with longer sleeps and smaller batches: the step may block the host")
                gpu_busy_cycles *= 4
                per_batch = max(1, per_batch // 2)
                continue
            times.extend(a.elapsed_time(b) for a, b in events)
    return statistics.median(times[:iters])


def gpu_ms_or_reason(step, device, **kwargs):
    """(gpu_ms(step, device, **kwargs), None), or (None, why) when the host could not get ahead of the
    GPU: a benchmark row keeps its other numbers instead of failing."""
    try:
        return gpu_ms(step, device, **kwargs), None
    except RuntimeError as err:
        return None, str(err)[:200]


def gpu_only(step, device, batch, *, iters=5):
    """The step's kernels alone (gpu_ms; steps of a model take 10-100 ms of host time, hence two per
    batch behind ~200 ms of sleep): what the point would reach if the host kept up, as with CUDA graphs.
    An eager step that queues more launches than the driver buffers blocks the host whatever the sleep; its
    kernels' summed time under torch.profiler stands in (gpu_ms_clock says which, gpu_ms_error why)."""
    ms, why = gpu_ms_or_reason(step, device, iters=iters, per_batch=2, gpu_busy_cycles=400_000_000)
    if ms is not None:
        return {"gpu_ms_per_step": ms, "gpu_img_per_s": batch / (ms * 1e-3), "gpu_ms_clock": "cuda_events"}
    from vig.bench.profile import kernel_ms_per_step  # profile builds on this module
    try:
        ms = kernel_ms_per_step(step, device)
    except RuntimeError as err:
        return {"gpu_ms_per_step": None, "gpu_ms_error": f"{why}; profiler: {str(err)[:200]}"}
    return {"gpu_ms_per_step": ms, "gpu_img_per_s": batch / (ms * 1e-3), "gpu_ms_clock": "profiler_kernel_sum",
            "gpu_ms_error": why}


def time_steps(step, device, *, warmup, repeats, iters, max_seconds=None):
    """Run step() `warmup` times, then `repeats` timed blocks of `iters` calls each.

    Returns (seconds per call for each block, warmup seconds). Stops adding blocks (keeping at least
    one) once max_seconds of timed work is spent, so slow points cannot blow a time budget."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warm_s = time.perf_counter() - t0
    per_call, spent = [], 0.0
    for _ in range(repeats):
        with Timer(device) as timer:
            for _ in range(iters):
                step()
        per_call.append(timer.seconds / iters)
        spent += timer.seconds
        if max_seconds is not None and spent > max_seconds:
            break
    return per_call, warm_s


def summarize(per_call, batch):
    med = statistics.median(per_call)
    return {
        "img_per_s": batch / med,
        "ms_per_step": med * 1e3,
        "ms_per_step_min": min(per_call) * 1e3,
        "ms_per_step_max": max(per_call) * 1e3,
        "timed_blocks": len(per_call),
    }


def inference_step(model, x, device, dtype_name):
    def step():
        with torch.inference_mode(), autocast(device, dtype_name):
            model(x)
    return step


def train_step(model, x, y, device, dtype_name):
    """One full optimisation step: forward, loss, backward, AdamW update (fused on CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype_name == "fp16")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype_name):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return step


def measure(model, mode, batch, img_size, device, dtype_name, *, warmup, repeats, iters,
            channels_last=False, max_seconds=None, num_classes=1000):
    """Throughput and peak memory of one (model, mode, batch, resolution) point.

    Returns a dict; on out-of-memory returns {"status": "oom", ...} and leaves the device clean."""
    x = y = step = None
    try:
        reset_peak(device)
        static = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
        chans = getattr(model, "in_chans", 3)  # vig_fmnist is grayscale
        x = torch.randn(batch, chans, img_size, img_size, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if mode == "infer":
            model.eval()
            step = inference_step(model, x, device, dtype_name)
        else:
            model.train()
            y = torch.randint(0, num_classes, (batch,), device=device)
            step = train_step(model, x, y, device, dtype_name)
        per_call, warm_s = time_steps(step, device, warmup=warmup, repeats=repeats, iters=iters,
                                      max_seconds=max_seconds)
        result = {"status": "ok", **summarize(per_call, batch), "warmup_s": warm_s,
                  "peak_mem_mib": peak_mib(device), "weights_mem_mib": static}
        if device.type == "cuda":  # above ms_per_step, the point is bound by the host, not the GPU
            result["host_ms_per_step"] = host_ms(step, device, iters=3)
            result.update(gpu_only(step, device, batch))
    except Exception as err:  # noqa: BLE001  (only OOM is turned into a result)
        if not is_oom(err):
            raise
        result = {"status": "oom", "error": str(err).splitlines()[0][:200], "peak_mem_mib": peak_mib(device)}
    finally:
        del x, y, step
        model.zero_grad(set_to_none=True)
        free_memory(device)
    return result
