"""Stub of causal_conv1d (CUDA-only), for check_official.py: the official models import it. Written from the official
kernels' semantics, not copied."""
