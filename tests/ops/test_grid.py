"""The host-side grid helpers agree with triton's constexpr versions they replace."""
import pytest

from vig.ops.grid import cdiv, next_pow2


def test_cdiv_and_next_pow2_match_triton():
    triton = pytest.importorskip("triton")
    for a in range(0, 300):
        assert a == 0 or next_pow2(a) == triton.next_power_of_2(a), a
        for b in (1, 2, 3, 16, 64, 128):
            assert cdiv(a, b) == triton.cdiv(a, b), (a, b)
