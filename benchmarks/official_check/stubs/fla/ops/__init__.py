"""Stub of fla.ops. Written from the official kernels' semantics, not copied."""
