"""Fused bidirectional GLA in Triton (forward and backward). Imported lazily by the dispatcher:
importing vig never imports triton. Kernels: _chunk_*.py (default), _fwd.py, _bwd.py, _states.py (seq path); host
side: config.py (launch rules, knobs) and launch.py (buffers, launches)."""
import vig.ops.bigla.custom_op  # noqa: F401  (registers torch.ops.vig.bigla)
from vig.ops.bigla.triton_call import bigla_triton_call
from vig.ops.bigla.triton.config import SUPPORTED_DIMS, check_supported
from vig.ops.bigla.triton.launch import bigla_bwd, bigla_fwd
from vig.ops.bigla.validate import check_inputs


def bigla_triton(q, k, v, g_fwd, g_bwd, scale=None, gate_logit_normalizer=None):
    """o = BiGLA(q, k, v, g_fwd, g_bwd) through the fused kernels, differentiable in all five inputs
    (gate_logit_normalizer: see vig.ops.bigla.bigla)."""
    # the kernels read every tensor through q's sizes: mismatched shapes, dtypes or devices were read out of bounds
    normalizer = check_inputs(q, k, v, g_fwd, g_bwd, scale, "triton", False, gate_logit_normalizer)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    check_supported(q, v)
    return bigla_triton_call(q, k, v, g_fwd, g_bwd, float(scale), normalizer)


__all__ = ["bigla_triton", "bigla_fwd", "bigla_bwd", "check_supported", "SUPPORTED_DIMS"]
