"""The fast intra-chunk path with the chunk's middle row as its factor references (VIG_BIGLA_HALF_SUM_REF=0; the
default takes half the chunk's gate sums; read when the kernels are defined: _fwd.HALF_SUM_REF) under
TRITON_INTERPRET=1 against the float64 oracle, in a child process of its own: the walking seq forward and the
block-pair forward, whose _scores take it.
Any reference gives the same scores in exact arithmetic (it cancels in each product); these cases check that the
variant compiles, reaches the kernels and keeps the tolerances, with mild, strong and reset gates."""
import pytest

import test_triton_interpret as base

CASES = [c for c in base.CASES if c[0] in (
    "seq_T37_k32v64_bf16_fwd_dots", "seq_T17_k32v64_strided", "seq_long_T33_k16v32_seg16", "seq_T37_hard_reset",
    "seq_T17_k32v64_logits_strided", "seq_long_T70_k32v64_logits_strong_seg16_split_exact",
    "tile_T70_k32v64_bm16", "tile_T40_k32v64_logits_strong_bm16_strided")]
INTERPRETER_UNSET_ENV = base.KNOBS


def test_cases_exist():
    assert len(CASES) == 8


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_middle_row_reference_matches_oracle(interpreted, case):
    base.assert_knob_case(interpreted[case], case, "half_sum_ref", False)


def test_half_sum_reference_knob_is_checked(monkeypatch):
    from vig.ops.bigla.triton._fwd import _half_sum_ref_setting
    base.check_switch(monkeypatch, "VIG_BIGLA_HALF_SUM_REF", _half_sum_ref_setting, True, bad="half")


def _kernels_setting():
    from vig.ops.bigla.triton import _fwd
    return bool(_fwd.HALF_SUM_REF.value)


if __name__ == "__main__":
    base.run_knob_child("VIG_BIGLA_HALF_SUM_REF", "0", [c[0] for c in CASES], "half_sum_ref", _kernels_setting)
