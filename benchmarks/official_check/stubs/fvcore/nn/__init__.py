"""Stub of fvcore.nn: the names vig_h.py imports, unused for the math. Written from the official kernels' semantics,
not copied."""
FlopCountAnalysis = flop_count_str = flop_count = parameter_count = None  # imported, unused for the math
