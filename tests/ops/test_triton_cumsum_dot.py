"""_common.cumsum_rows_dot, the chunk backward's row sums as 0/1-triangle dots, against float64: all four modes
(forward / reverse, inclusive / exclusive), 16- and 32-row tiles, on columns with a hard reset (one gate of
-2000 among gates of about -0.1). The exclusive sums are what the kernel takes instead of total - x, a difference
of two sums near -2000 that loses ~1e-4 absolute (fp32's spacing there) on a result of size ~1: the bound below
(4e-6 relative to the largest partial sum that a row's result is made of, 2^-18) fails such a difference.
On CPU under TRITON_INTERPRET=1 (a child process: the `interpreted` fixture), on a GPU in process."""
import json

import pytest
import torch
import triton
import triton.language as tl

from vig.ops.bigla.triton._common import cumsum_rows_dot

MODES = [(reverse, exclusive) for reverse in (False, True) for exclusive in (False, True)]
ROWS = (16, 32)
BOUND = 4e-6


@triton.jit
def _cumsum_kernel(x_ptr, out_ptr, BT: tl.constexpr, D: tl.constexpr, REVERSE: tl.constexpr,
                   EXCLUSIVE: tl.constexpr):
    offs = tl.arange(0, BT)[:, None] * D + tl.arange(0, D)[None, :]
    tl.store(out_ptr + offs, cumsum_rows_dot(tl.load(x_ptr + offs), BT, REVERSE, EXCLUSIVE))


def _columns(rows, device):
    gen = torch.Generator().manual_seed(rows)
    x = -0.1 * torch.rand(rows, 32, generator=gen, dtype=torch.float64)
    x[rows // 3, :16] = -2000.0  # a hard reset in half the columns, in the first third of the rows
    x[rows - 3, 16:] = -2000.0  # ... and near the end in the others
    return x.to(device)


def _reference(x, reverse, exclusive):
    y = x.flip(0).cumsum(0).flip(0) if reverse else x.cumsum(0)
    return y - x if exclusive else y


def _worst_errors(device):
    """Per mode and tile rows: the largest |error| / the largest |partial sum| of that row's column sum."""
    out = {}
    for rows in ROWS:
        x64 = _columns(rows, device)
        x = x64.float()
        for reverse, exclusive in MODES:
            y = torch.empty_like(x)
            _cumsum_kernel[(1,)](x, y, rows, 32, reverse, exclusive)
            ref = _reference(x.double(), reverse, exclusive)
            # a row's own terms, all <= 0 here, so its largest partial sum is the result itself
            scale = ref.abs().clamp_min(1e-30)
            out[f"{rows}_{int(reverse)}{int(exclusive)}"] = float(((y.double() - ref).abs() / scale).max())
    return out


def _check(errs):
    assert len(errs) == len(ROWS) * len(MODES)
    for key, err in errs.items():
        assert err <= BOUND, f"rows_reverse-exclusive {key}: relative error {err:.2e} > {BOUND}"


def test_exclusive_sums_beat_differences_of_inclusive_ones():
    """The bound separates the two ways: total - inclusive sum misses it on these columns (float32 on CPU)."""
    x = _columns(16, "cpu").float()
    diff = x.sum(0) - x.cumsum(0)  # the old exponent of the keys' decay to the right edge
    ref = _reference(x.double(), False, True)
    rows_after_reset = slice(16 // 3 + 1, 16)
    err = ((diff.double() - ref).abs() / ref.abs().clamp_min(1e-30))[rows_after_reset, :16].max()
    assert err > BOUND, err


def test_interpreted_row_sums_match_float64(interpreted):
    _check(interpreted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_row_sums_match_float64():
    _check(_worst_errors("cuda"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(_worst_errors("cpu")))
