"""Stub of transformers: activations.ACT2FN only. Written from the official kernels' semantics, not copied."""
