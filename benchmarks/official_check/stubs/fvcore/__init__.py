"""Stub of fvcore (imported by the official vig_h.py for FLOP counting). Written from the official kernels' semantics,
not copied."""
