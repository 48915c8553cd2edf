"""SwiGLU MLPs of ViG (channel-last) and ViG-H (channel-first, 'gMlp')."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from vig.layers.fused import LINEAR_SWIGLU_TMA, compute_dtype, fused_enabled, fused_op_enabled, sm90
from vig.layers.linear2d import Linear2d


def swiglu(h, dim=-1):
    """silu(a) * b with [a | b] = h.chunk(2, dim): one Triton kernel each way on CUDA, two torch ops else. Under
    torch.compile ViG's channel-last split goes through the custom op vig::swiglu, whose backward beat inductor's
    (ViG-T training +2.1%, session 17); ViG-H's channel split stays with inductor unless
    VIG_FUSED_ON=swiglu_op_channels (not timed). VIG_FUSED_OFF=swiglu_op traces the plain path."""
    if fused_enabled(h, "swiglu") and h.is_contiguous():
        from vig.layers.fused.swiglu import swiglu_fused
        return swiglu_fused(h, dim)
    name = "swiglu_op" if dim % h.dim() == h.dim() - 1 else "swiglu_op_channels"
    if torch.compiler.is_compiling() and h.is_contiguous() and fused_op_enabled(h, name):
        from vig.layers.fused.swiglu_op import swiglu_op
        return swiglu_op(h, dim)
    a, b = h.chunk(2, dim=dim)
    return F.silu(a) * b


def swiglu_hidden(dim: int, multiple: int) -> int:
    """The official hidden size: int(8*dim/3) rounded up to `multiple` (256 for ViG, 32 for ViG-H)."""
    hidden = int(dim * 8 / 3)
    return multiple * ((hidden + multiple - 1) // multiple)


def train_max_dim_knob():
    """VIG_FUSED_MLP_TRAIN_MAX_DIM (a positive int; A/B runs in separate processes), else None."""
    knob = os.environ.get("VIG_FUSED_MLP_TRAIN_MAX_DIM")
    if not knob:
        return None
    if not knob.isdigit() or int(knob) < 1:
        raise ValueError(f"VIG_FUSED_MLP_TRAIN_MAX_DIM must be a positive integer, got {knob!r}")
    return int(knob)


FUSED_MLP_DTYPES = (torch.bfloat16, torch.float16)  # compute dtypes that take vig::linear_swiglu
FUSED_MLP_TRAIN_MAX_DIM = train_max_dim_knob()  # set: the training width limit everywhere (A/B runs)


def fused_mlp_train_max_dim(x) -> int:
    """The widest MLP input whose training steps take vig::linear_swiglu too (inference takes it at every width).
    Its backward recomputes gate_proj's GEMM, which pays while that GEMM is memory-bound. On the block-grid kernels
    that holds at ViG-T's 192 (fwd + bwd 0.267 against 0.296 ms split), not at ViG-B's 768 (2.25 against 1.77; H100,
    bf16, 50,176 rows; linear_swiglu.py). On the TMA kernels (sm_90, the default there) ViG-S's 384 trains at the
    split path's speed in 19% less memory: 6,640 against 6,571 img/s, 9,819 against 12,169 MiB; ViG-B's 768 did not
    pay (2,793 against 2,874 img/s; session 42, bs 256, each in its own process). Past the limit, a forward op that
    stored h from the TMA epilogue for the split path's backward (session 43) trained ViG-B at 2,936 against 2,920
    img/s in the same memory: within the runs' spread, removed. torch.compile folds the device query to a
    constant."""
    if FUSED_MLP_TRAIN_MAX_DIM is not None:
        return FUSED_MLP_TRAIN_MAX_DIM
    return 384 if LINEAR_SWIGLU_TMA and x.is_cuda and sm90(x.device) else 256


class SwiGLUMlp(nn.Module):
    """down_proj(silu(a) * b) with [a | b] = gate_proj(x); x [..., C].

    On CUDA in bf16 / fp16 (autocast or half weights) gate_proj and the SwiGLU are one GEMM each way, the custom op
    vig::linear_swiglu, which never stores gate_proj's output (VIG_FUSED_OFF=linear_swiglu: the split path), for
    inference at every width and for training up to fused_mlp_train_max_dim(x). fp32 keeps the split path: cuBLAS,
    under torch's own TF32 settings."""

    def __init__(self, dim, hidden_features):
        super().__init__()
        self.gate_proj = nn.Linear(dim, 2 * hidden_features, bias=False)
        self.down_proj = nn.Linear(hidden_features, dim, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x, packed_weights=None):
        """packed_weights: weight_pack.block_weights' views (gate_proj's and down_proj's weights, cast once)."""
        gate_w = self.gate_proj.weight if packed_weights is None else packed_weights["gate"]
        down = self.down_proj if packed_weights is None else (lambda h: F.linear(h, packed_weights["down"]))
        # the route's check first: it needs CUDA, and autocast has no state to ask for meta tensors (FLOP counts)
        if fused_op_enabled(x, "linear_swiglu"):
            dtype = compute_dtype(x)
            if dtype in FUSED_MLP_DTYPES and (not self._needs_grad(x) or x.shape[-1] <= fused_mlp_train_max_dim(x)):
                from vig.layers.fused.linear_swiglu_op import linear_swiglu
                return down(linear_swiglu(x.to(dtype), gate_w.to(dtype)))
        return down(swiglu(self.gate_proj(x) if packed_weights is None else F.linear(x, gate_w), -1))

    def _needs_grad(self, x):
        return torch.is_grad_enabled() and (x.requires_grad or self.gate_proj.weight.requires_grad)


class GatedMlp2d(nn.Module):
    """ViG-H 'gMlp' on NCHW: fc2(silu(a) * b) with [a | b] = fc1(x) along channels."""

    def __init__(self, dim, hidden_features, drop=0.0):
        super().__init__()
        self.fc1 = Linear2d(dim, 2 * hidden_features, bias=False)
        self.act = nn.SiLU()
        self.fc2 = Linear2d(hidden_features, dim, bias=False)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(swiglu(self.fc1(x), 1))))

