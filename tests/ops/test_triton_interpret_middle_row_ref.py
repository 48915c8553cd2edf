"""The fast intra-chunk paths with the chunk's middle row as their factor references (VIG_BIGLA_HALF_SUM_REF=0
and VIG_BIGLA_BWD_HALF_SUM_REF=0; the defaults take half the chunk's gate sums; both are read when the kernels are
defined: _fwd.HALF_SUM_REF, _chunk_bwd.BWD_HALF_SUM_REF) under TRITON_INTERPRET=1 against the float64 oracle, in a
child process of its own: the walking seq forward and the block-pair forward, whose _scores take the first, and
the chunk backward, whose fast path takes the second.
Any reference gives the same results in exact arithmetic (it cancels in each product); these cases check that the
variants compile, reach the kernels and keep the tolerances: mild, strong, near-zero and reset gates, logits,
chunks of 16, 32 and 64 tokens, bf16 inputs and states, strided inputs, the backward as one launch and split."""
import pytest

import test_triton_interpret as base

FORWARD_CASES = (
    "seq_T37_k32v64_bf16_fwd_dots", "seq_T17_k32v64_strided", "seq_long_T33_k16v32_seg16", "seq_T37_hard_reset",
    "seq_T17_k32v64_logits_strided", "seq_long_T70_k32v64_logits_strong_seg16_split_exact",
    "tile_T70_k32v64_bm16", "tile_T40_k32v64_logits_strong_bm16_strided")
BACKWARD_CASES = (
    "chunk_T40_k16v32_c16", "chunk_T70_k32v64_c32_strided", "chunk_T130_k32v64_c64", "chunk_T70_k32v64_extreme_c64",
    "chunk_T33_k16v32_near_zero_c32", "chunk_T37_hard_reset_c16", "chunk_T70_k32v64_bf16_states",
    "chunk_T40_k16v32_logits_c16", "chunk_T70_k32v64_logits_strong_one_launch", "chunk_T70_k32v64_logits_bf16_io")
CASES = [c for c in base.CASES if c[0] in FORWARD_CASES + BACKWARD_CASES]
KNOBS = {"VIG_BIGLA_HALF_SUM_REF": "0", "VIG_BIGLA_BWD_HALF_SUM_REF": "0"}
SETTINGS = {"half_sum_ref": False, "bwd_half_sum_ref": False}
INTERPRETER_UNSET_ENV = base.KNOBS


def test_cases_exist():
    assert len(CASES) == len(FORWARD_CASES) + len(BACKWARD_CASES) == 18


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_middle_row_reference_matches_oracle(interpreted, case):
    base.assert_knob_case(interpreted[case], case, SETTINGS)


def test_half_sum_reference_knobs_are_checked(monkeypatch):
    from vig.ops.bigla.triton._chunk_bwd import _bwd_half_sum_ref_setting
    from vig.ops.bigla.triton._fwd import _half_sum_ref_setting
    base.check_switch(monkeypatch, "VIG_BIGLA_HALF_SUM_REF", _half_sum_ref_setting, True, bad="half")
    base.check_switch(monkeypatch, "VIG_BIGLA_BWD_HALF_SUM_REF", _bwd_half_sum_ref_setting, True, bad="half")


def _forward_setting():
    from vig.ops.bigla.triton import _fwd
    return bool(_fwd.HALF_SUM_REF.value)


def _backward_setting():
    from vig.ops.bigla.triton import _chunk_bwd
    return bool(_chunk_bwd.BWD_HALF_SUM_REF.value)


if __name__ == "__main__":
    base.run_knob_child(KNOBS, [c[0] for c in CASES], {"half_sum_ref": _forward_setting,
                                                        "bwd_half_sum_ref": _backward_setting})
