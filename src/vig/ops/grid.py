"""Integer helpers for launch grids and block sizes, in plain Python on the host.

triton.cdiv and triton.next_power_of_2 are constexpr functions: each host call goes through their
wrapper (~3 us on a CPU, measured with timeit; these run on every launch of an eager step)."""


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n, for n >= 1 (a row length; 1 for n <= 1, where triton gives 0 at n = 0)."""
    return 1 << max(0, n - 1).bit_length()


_SM_COUNT = {}


def sm_count(device) -> int:
    """Streaming multiprocessors of a CUDA device, cached per device (launches ask on every call); 4 off CUDA,
    where the kernels run under triton's interpreter and a persistent grid only needs a few programs."""
    if device.type != "cuda":
        return 4
    import torch
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]
