"""Which launch of vig::low_rank_gate faults on the GPU (call 28, session 48: an illegal memory access in its GPU tests
at 787 and 128 rows, where session 45 had timed the same launch at 50,176 rows without one). Call 29 found it: with
one tile a program, Triton made the tile count a constant, and the backward compiled that way read shared memory out
of bounds (compute-sanitizer); the kernels now leave it unspecialised, and `specialized` rebuilds the faulting form.

One variant a process (a fault poisons the CUDA context), CUDA_LAUNCH_BLOCKING=1 so the fault is raised at its launch.
Each variant runs the forward and then the backward at each row count, largest first, against the module path in
float64, and prints one JSON line a step with the compiled kernel's shared memory and registers.
  python3 benchmarks/device/low_rank_gate_crash.py                    # every variant, one child each
  python3 benchmarks/device/low_rank_gate_crash.py --variant as_is    # one variant in this process
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
from unittest import mock

VARIANTS = ("as_is", "specialized", "rows4096", "warps4", "rows8192")
ROWS = (50176, 787, 128)


def _kernel_info(compiled):
    meta = getattr(compiled, "metadata", None)
    return {"shared": getattr(meta, "shared", None), "regs": getattr(compiled, "n_regs", None),
            "spills": getattr(compiled, "n_spills", None)}


def patches(kernels, variant):
    """The module attributes a variant replaces: launch sizes, or the kernels re-jitted with Triton's default
    specialisation (an int argument equal to 1 becomes a constant: at 787 or 128 rows each program walks one tile,
    at 50,176 six), the form that faulted."""
    import triton
    if variant == "rows4096":
        return [mock.patch.object(kernels, "ROW_ELEMENTS", 4096)]
    if variant == "rows8192":
        return [mock.patch.object(kernels, "ROW_ELEMENTS", 8192)]
    if variant == "warps4":
        return [mock.patch.object(kernels, "WARPS", 4)]
    if variant == "specialized":
        return [mock.patch.object(kernels, name, triton.jit(getattr(kernels, name).fn))
                for name in ("low_rank_gate_fwd_kernel", "low_rank_gate_bwd_kernel")]
    return []


class _Recorder:
    """Stands in for a kernel and records the compiled kernel's resources at each launch."""

    def __init__(self, kernel, name, launched):
        self.kernel, self.name, self.launched = kernel, name, launched

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launched[self.name] = _kernel_info(self.kernel[grid](*args, **kwargs))
        return launch


def run_variant(variant, device="cuda", rows=ROWS, channels=192):
    """Forward then backward at each row count under the variant's patches (undone at the end); prints and returns
    one row a step: a fault ends the process, after the step's "start" row."""
    import torch
    import vig.layers.fused.low_rank_gate as kernels
    launched, out = {}, []
    with contextlib.ExitStack() as stack:
        for p in patches(kernels, variant):
            stack.enter_context(p)
        for name in ("low_rank_gate_fwd_kernel", "low_rank_gate_bwd_kernel"):
            stack.enter_context(mock.patch.object(kernels, name, _Recorder(getattr(kernels, name), name, launched)))
        gen = torch.Generator().manual_seed(0)
        for m in rows:
            x, dy = (torch.randn(m, channels, generator=gen).to(torch.bfloat16).to(device) for _ in range(2))
            w0 = (torch.randn(16, channels, generator=gen) / channels ** 0.5).to(device)
            w1 = (torch.randn(channels, 16, generator=gen) / 4).to(device)
            bias = torch.randn(channels, generator=gen).to(device)
            for phase in ("fwd", "bwd"):
                row = {"variant": variant, "rows": m, "phase": phase}
                print(json.dumps({**row, "status": "start"}), flush=True)
                if phase == "fwd":
                    got = kernels.low_rank_gate_forward(x, w0, w1, bias)
                    exact = torch.nn.functional.linear(x.double() @ w0.double().T, w1.double(), bias.double())
                else:
                    got = kernels.low_rank_gate_backward(dy, x, w0, w1)[0]
                    exact = dy.double() @ w1.double() @ w0.double()
                if device == "cuda":
                    torch.cuda.synchronize()
                err = ((got.double() - exact).norm() / exact.norm()).item()
                kernel = f"low_rank_gate_{phase}_kernel"
                out.append({**row, "status": "ok", "rel_err": err, "kernel": launched[kernel]})
                print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, nargs="*", default=list(ROWS))
    args = parser.parse_args(argv)
    if args.variant:
        run_variant(args.variant, args.device, args.rows)
        return
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--device", args.device, "--rows",
                               *map(str, args.rows)], env=env, capture_output=True, text=True, timeout=300)
        sys.stdout.write(done.stdout)
        if done.returncode:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-3:]
            print(json.dumps({"variant": variant, "status": "failed", "rc": done.returncode, "stderr": tail}),
                  flush=True)


if __name__ == "__main__":
    main()
