"""The chunk backward's fast intra-chunk path with the chunk's middle row as its factor references
(VIG_BIGLA_BWD_HALF_SUM_REF=0; the default takes half the chunk's gate sums; read when the kernels are defined:
_chunk_bwd.BWD_HALF_SUM_REF) under
TRITON_INTERPRET=1 against the float64 oracle, in a child process of its own. Any reference gives the same
gradients in exact arithmetic (it cancels in each product); these cases check that the variant compiles, reaches
the kernel and keeps the tolerances: chunks of 16, 32 and 64 tokens, mild, strong, near-zero and reset gates,
logits, bf16 inputs and states, strided inputs, one launch and the split one."""
import pytest

import test_triton_interpret as base

CASES = [c for c in base.CASES if c[0] in (
    "chunk_T40_k16v32_c16", "chunk_T70_k32v64_c32_strided", "chunk_T130_k32v64_c64", "chunk_T70_k32v64_extreme_c64",
    "chunk_T33_k16v32_near_zero_c32", "chunk_T37_hard_reset_c16", "chunk_T70_k32v64_bf16_states",
    "chunk_T40_k16v32_logits_c16", "chunk_T70_k32v64_logits_strong_one_launch", "chunk_T70_k32v64_logits_bf16_io")]
INTERPRETER_UNSET_ENV = base.KNOBS


def test_cases_exist():
    assert len(CASES) == 10


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_bwd_middle_row_reference_matches_oracle(interpreted, case):
    base.assert_knob_case(interpreted[case], case, "bwd_half_sum_ref", False)


def test_bwd_half_sum_reference_knob_is_checked(monkeypatch):
    from vig.ops.bigla.triton._chunk_bwd import _bwd_half_sum_ref_setting
    base.check_switch(monkeypatch, "VIG_BIGLA_BWD_HALF_SUM_REF", _bwd_half_sum_ref_setting, True, bad="half")


def _kernels_setting():
    from vig.ops.bigla.triton import _chunk_bwd
    return bool(_chunk_bwd.BWD_HALF_SUM_REF.value)


if __name__ == "__main__":
    base.run_knob_child("VIG_BIGLA_BWD_HALF_SUM_REF", "0", [c[0] for c in CASES], "bwd_half_sum_ref", _kernels_setting)
