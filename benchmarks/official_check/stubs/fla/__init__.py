"""Stub of the bundled fla 0.1 (Triton, GPU-only): only the names vig.py / vig_h.py import, in float64-capable
PyTorch. Written from the official kernels' semantics, not copied."""
