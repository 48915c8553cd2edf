"""The plain-ViG token mixer: bidirectional gated linear attention with 2D locality injection.

Module and parameter names follow the official release (official_spec.md §1.1) so that its
checkpoints load strictly; the math is the official eval path (§1.3) with the paper's /2 averaging.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from vig.ops.bigla import bigla, log_decays
from vig.ops.bigla.packed import bigla_packed, split_packed
from vig.layers.fused import compute_dtype, fused_enabled, fused_op_enabled, rewrite_enabled
from vig.layers.norms import RMSNorm

XAVIER_GAIN = 2 ** -2.5  # the official GatedLinearAttention.reset_parameters gain


def reset_bigla_projections(mixer: nn.Module) -> None:
    """Official re-init shared by both mixers: small xavier on every projection and the dw conv."""
    for w in (mixer.qkv_proj.weight, mixer.in_proj[0].weight, mixer.g_proj.weight,
              mixer.o_proj.weight, mixer.gk_proj[0].weight, mixer.gk_proj[1].weight):
        nn.init.xavier_uniform_(w, gain=XAVIER_GAIN)
    for b in (mixer.g_proj.bias, mixer.gk_proj[1].bias):
        nn.init.zeros_(b)


def head_dims(dim: int, num_heads: int, expand_k: float, expand_v: float):
    """(key_dim, value_dim, head_k_dim, head_v_dim), with the checks the locality branch needs."""
    key_dim, value_dim = int(dim * expand_k), int(dim * expand_v)
    if key_dim % num_heads or value_dim % num_heads:
        raise ValueError(f"BiGLA: key dim {key_dim} and value dim {value_dim} must be divisible by num_heads={num_heads}")
    if value_dim != dim:
        # the local branch views the conv output (dim channels) as value heads
        raise ValueError(f"BiGLA: expand_v must be 1.0 (value dim {value_dim} must equal dim {dim})")
    return key_dim, value_dim, key_dim // num_heads, value_dim // num_heads


def gate_blend(o, loc, g):
    """o * g + loc * (1 - g) as one kernel, rounded once: lerp(loc, o, g) = loc + g * (o - loc)."""
    dt = torch.promote_types(torch.promote_types(o.dtype, loc.dtype), g.dtype)
    return torch.lerp(loc.to(dt), o.to(dt), g.to(dt))


def log_gates(x, normalizer):
    """Log-space decays logsigmoid(x) / normalizer in fp32 (one kernel on CUDA)."""
    if fused_enabled(x, "logsigmoid"):
        from vig.layers.fused.logsigmoid import log_gate_fused
        return log_gate_fused(x, normalizer)
    return log_decays(x, normalizer)


def gates_for_op(x, normalizer, gate_logits):
    """The gate projection's output x as the op's gates: the logits themselves when gate_logits (the op
    applies logsigmoid(x) / normalizer, bigla's gate_logit_normalizer), else log-space decays."""
    return x if gate_logits else log_gates(x, normalizer)


def logits_into_op(x) -> bool:
    """On CUDA the gate logits go into the op, whose kernels take logsigmoid as they load a tile: no fp32
    decay tensor is written, read or saved (VIG_FUSED_OFF=gate_logits: decays first, for A/B timings)."""
    return rewrite_enabled(x, "gate_logits")


def norm_gate_blend(mixer, o, loc, gp, out_silu=False, gp_bias=None):
    """The 2D gating of both mixers: lerp(l_norm(loc), g_norm(o), sigmoid(gp + gp_bias)), one kernel on CUDA (also
    under torch.compile for channel-last inputs, through the custom op vig::gated_norm_blend); out_silu=True applies
    a SiLU to the result (inside that kernel on CUDA); gp_bias (g_proj's bias, where merged inference leaves it out
    of the GEMM) is added inside it too. VIG_FUSED_OFF=gate_op: compile traces the plain path (A/B)."""
    same_eps = mixer.g_norm.eps == mixer.l_norm.eps
    if same_eps and fused_enabled(o, "gate"):
        from vig.layers.fused.gate import gated_norm_blend_fused
        return gated_norm_blend_fused(o, loc, gp, mixer.g_norm.weight, mixer.l_norm.weight, mixer.g_norm.eps,
                                      out_silu=out_silu, gp_bias=gp_bias)
    # channel-strided views (ViG-H's NCHW mixer) would be copied for the kernel, where inductor fuses the permute
    unit_stride = all(t.stride(-1) == 1 for t in (o, loc, gp))
    if same_eps and unit_stride and torch.compiler.is_compiling() and fused_op_enabled(o, "gate_op"):
        from vig.layers.fused.gate_op import gated_norm_blend
        return gated_norm_blend(o, loc, gp, mixer.g_norm.weight, mixer.l_norm.weight, mixer.g_norm.eps, out_silu,
                                gp_bias)
    if gp_bias is not None:
        gp = gp + gp_bias.view(gp.shape[-2:])
    y = gate_blend(mixer.g_norm(o), mixer.l_norm(loc), torch.sigmoid(gp))
    return F.silu(y) if out_silu else y


def merges_projections(mixer, xs) -> bool:
    """Inference on CUDA reads the conv output once for qkv_proj, gk_proj's first layer and g_proj: one GEMM
    (merged_projections). H100, bf16, bs 256, CUDA graphs, against three GEMMs in the same call (NOTES sessions 35-36):
    ViG-T +3.9% img/s at 224² and 1024²; ViG-S +2.2% and ViG-B +1.3% with stack_width's padding (7% / 5% slower
    before it). Training keeps three: their gradients would have to be concatenated for one backward GEMM, a full
    extra pass (VIG_FUSED_OFF=proj_merge: three GEMMs at inference too, for A/B timings)."""
    return not torch.is_grad_enabled() and rewrite_enabled(xs, "proj_merge")


def stack_width(width: int) -> int:
    """The merged GEMM's output width: above 1,024 columns, a multiple of 64 (zero weight rows fill it). Inductor
    pads a buffer's row stride above 1,024 elements to 128 bytes (its padding_stride_threshold), and then copies
    each column slice that a custom op takes, to give it the strides eager had (ViG-S / ViG-B, 1,168 and 2,320
    columns, on an H100 in session 35: qkv and gp copied, 80 us a block at ViG-S, inference 7% slower than
    unmerged, where ViG-T's 592 columns gained 4%; padded, ViG-S / ViG-B gained 2.2% / 1.3% in session 36)."""
    return width if width <= 1024 else -(-width // 64) * 64


def merged_projections(mixer, xs, packed_weights=None):
    """(qkv_proj(xs), gk_proj(xs), g_proj(xs) less its bias) with the three GEMMs that read xs as one over their
    stacked weights (the checkpoint's parameters stay as they are; the stack is a few hundred rows). The outputs are
    column slices of one buffer, which bigla_packed, gk_proj's second layer and the gate kernel read in place; the
    gate kernel adds g_proj's bias (norm_gate_blend's gp_bias). packed_weights: weight_pack.block_weights' views."""
    weights = (mixer.qkv_proj.weight, mixer.gk_proj[0].weight, mixer.g_proj.weight)
    widths = tuple(w.shape[0] for w in weights)
    pad = stack_width(sum(widths)) - sum(widths)
    if packed_weights is not None:
        weight, gk1 = packed_weights["stack"], packed_weights["gk1"]
    else:
        weight = torch.cat(weights + ((weights[0].new_zeros(pad, weights[0].shape[1]),) if pad else ()))
        gk1 = mixer.gk_proj[1].weight
    # mm and addmm on [tokens, C] rows, not F.linear: linear on a 3D input that is not contiguous (the low-rank
    # slice) takes matmul, a bmm of the broadcast weight plus a bias add that inductor writes out once per consumer.
    # And no bias in the stacked GEMM: with g_proj's bias there (and ViG-S's output stride padded, see stack_width),
    # the GEMM ran as a copy of the broadcast bias into the whole output plus a beta = 1 GEMM (H100, session 35)
    lead = xs.shape[:-1]
    qkv, low, gp = torch.mm(xs.reshape(-1, xs.shape[-1]), weight.t()).split(widths + (pad,), dim=-1)[:3]
    if fused_op_enabled(xs, "gk_proj_op") and low.dtype in (torch.bfloat16, torch.float16):
        from vig.layers.fused.low_rank_op import low_rank_linear
        gates = low_rank_linear(low, gk1.to(low.dtype), mixer.gk_proj[1].bias)
    else:
        gates = torch.addmm(mixer.gk_proj[1].bias, low, gk1.t())
    return tuple(t.view(*lead, t.shape[-1]) for t in (qkv, gates, gp))


def gate_projection(mixer, xs):
    """gk_proj(xs). On CUDA at widths up to 256 (ViG-T's), both layers as vig::low_rank_gate: one kernel each way in
    the compute dtype, where the module path runs two GEMMs forward and, backward, four more (dlow, dx and two split-K
    weight GEMMs with their reduce kernels) and the bias's column sum. H100, bf16, bs 256, CUDA graphs, session 45:
    gk_proj fwd + bwd 0.071 against 0.096 ms, ViG-T training 12,985 / 12,982 against 12,825 / 12,828 / 12,833 img/s
    (each in its own process of one machine). VIG_FUSED_OFF=gk_proj_train keeps the module path (A/B runs)."""
    if fused_op_enabled(xs, "gk_proj_train"):
        from vig.layers.fused.low_rank_gate_op import COMPUTE_DTYPES, RANKS, ROUTE_MAX_WIDTH, low_rank_gate
        w0, w1, dtype = mixer.gk_proj[0].weight, mixer.gk_proj[1].weight, compute_dtype(xs)
        if w0.shape[0] in RANKS and max(w0.shape[1], w1.shape[0]) <= ROUTE_MAX_WIDTH and dtype in COMPUTE_DTYPES:
            rows = xs.reshape(-1, xs.shape[-1]).to(dtype)
            return low_rank_gate(rows, w0, w1, mixer.gk_proj[1].bias).view(*xs.shape[:-1], w1.shape[0])
    return mixer.gk_proj(xs)


class BiGLAttention(nn.Module):
    """x [B, N, C] on an (h, w) raster grid -> [B, N, C].

    The depthwise-conv output feeds every projection and the local branch (spec §7.3); the two
    scan directions share q, k, v and differ only in their decay gates (§7.1).
    """

    def __init__(self, dim, num_heads, expand_k=0.5, expand_v=1.0, gate_low_rank_dim=16,
                 gate_logit_normalizer=16, use_act_in_conv=False, use_out_act=False, norm_eps=1e-6):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.key_dim, self.value_dim, self.head_k_dim, self.head_v_dim = head_dims(dim, num_heads, expand_k, expand_v)
        self.gate_logit_normalizer = gate_logit_normalizer
        self.in_proj = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.SiLU() if use_act_in_conv else nn.Identity(),
        )
        self.qkv_proj = nn.Linear(dim, 2 * self.key_dim + self.value_dim, bias=False)
        self.gk_proj = nn.Sequential(
            nn.Linear(dim, gate_low_rank_dim, bias=False),
            nn.Linear(gate_low_rank_dim, 2 * self.key_dim, bias=True),
        )
        self.o_proj = nn.Linear(self.value_dim, dim, bias=False)
        self.g_norm = RMSNorm(self.head_v_dim, eps=norm_eps)
        self.l_norm = RMSNorm(self.head_v_dim, eps=norm_eps)
        self.g_proj = nn.Linear(dim, self.value_dim, bias=True)
        self.gate_fn = nn.SiLU()  # kept for key/module parity with the release; unused there too
        if use_out_act:
            self.out_act = nn.SiLU()
        self.reset_parameters()
        # the conv reads the tokens' NHWC view, so its weight gradient comes back with channels-last strides; a
        # weight stored alike (the same memory: its channel dim has size 1) gives DDP bucket views that match, where
        # it warned of a grad-stride mismatch and copied the gradient each step
        w = self.in_proj[0].weight.data  # [C, 1, 3, 3]: already "channels-last contiguous", so a format copy is a no-op
        self.in_proj[0].weight.data = torch.empty_strided(w.shape, (w[0].numel(), 1, w.shape[3], 1), dtype=w.dtype,
                                                          device=w.device).copy_(w)

    def reset_parameters(self):
        reset_bigla_projections(self)

    def local_conv(self, x, hw, packed_weights=None):
        """Depthwise 3x3 conv of the token grid: x [B, N, C] -> [B, N, C] (packed_weights: its weight from
        weight_pack.block_weights)."""
        B, N, C = x.shape
        h, w = hw
        conv = self.in_proj if packed_weights is None else self._packed_conv(packed_weights["dw"])
        if fused_enabled(x, "dwconv_cl"):
            # the tokens already are NHWC: a channels-last conv reads and writes them without the
            # transpose copies of the NCHW path, and xs stays contiguous for the projections
            local = conv(x.reshape(B, h, w, C).permute(0, 3, 1, 2))
            return local.permute(0, 2, 3, 1).reshape(B, N, C)
        local = conv(x.transpose(1, 2).reshape(B, C, h, w))
        return local.flatten(2).transpose(1, 2)

    def _packed_conv(self, weight):
        conv, act = self.in_proj[0], self.in_proj[1]
        return lambda t: act(F.conv2d(t, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups))

    def project(self, x, hw, return_local=False, gate_logits=False, packed=False, gate_proj=False,
                packed_weights=None):
        """x [B, N, C], hw = (h, w) -> (q, k, v, g_fwd, g_bwd) in [B, N, H, D], gates in log space
        (gate_logits=True: the raw logits, for bigla(..., gate_logit_normalizer=self.gate_logit_normalizer)).

        q, k, v are views of one projection output. With return_local=True the depthwise-conv
        output xs [B, N, C] is appended (the local branch of the 2D gating). packed=True returns
        (qkv [B, N, 2 key_dim + value_dim], gates [B, N, 2 key_dim], xs) unsplit, for bigla_packed.
        gate_proj=True appends the 2D gate's logits g_proj(xs) [B, N, value_dim] and the bias they still need
        (None, or g_proj's bias where merged inference leaves it to the gate kernel). packed_weights: the views of
        weight_pack.block_weights, taken where the projections merge.
        """
        xs = self.local_conv(x, hw, packed_weights)
        gp = gp_bias = None
        if gate_proj and merges_projections(self, xs):
            qkv, gates, gp = merged_projections(self, xs, packed_weights)
            gp_bias = self.g_proj.bias
        else:
            qkv, gates = self.qkv_proj(xs), gate_projection(self, xs)
            if gate_proj:
                gp = self.g_proj(xs)
        # log-decays in fp32 (long products of near-1 decays are sensitive to gate precision); as logits the
        # gates stay in the projection's dtype and the op takes the logsigmoid in fp32
        g = gates_for_op(gates, self.gate_logit_normalizer, gate_logits)
        if packed:
            out = (qkv, g, xs)
        else:
            # split, not slicing: its backward is one cat, where each slice's would fill a full-size zero
            # tensor, copy into it and add (5 fills, 5 copies, 3 adds per block per training step; same values)
            out = split_packed(qkv, g, self.num_heads, self.head_k_dim) + ((xs,) if return_local else ())
        return out + (gp, gp_bias) if gate_proj else out

    def forward(self, x, hw, packed_weights=None):
        B, N, C = x.shape
        logits = logits_into_op(x)
        heads = (self.num_heads, self.head_v_dim)
        normalizer = self.gate_logit_normalizer if logits else None
        if fused_op_enabled(x, "bigla_packed"):
            # the Triton backward writes the gradients of qkv and of the gates in place, with no concatenation
            qkv, g, xs, gp, gp_bias = self.project(x, hw, gate_logits=logits, packed=True, gate_proj=True,
                                                   packed_weights=packed_weights)
            o = bigla_packed(qkv, g, self.num_heads, self.head_k_dim, gate_logit_normalizer=normalizer)
        else:
            q, k, v, g_fwd, g_bwd, xs, gp, gp_bias = self.project(x, hw, return_local=True, gate_logits=logits,
                                                                  gate_proj=True, packed_weights=packed_weights)
            o = bigla(q, k, v, g_fwd, g_bwd, gate_logit_normalizer=normalizer)
        act = getattr(self, "out_act", None)
        # on CUDA ViG-T's SiLU runs inside the gate kernel (VIG_FUSED_OFF=gate_silu: after it); the CPU path keeps
        # the module call
        fold = type(act) is nn.SiLU and fused_op_enabled(o, "gate_silu")
        o = norm_gate_blend(self, o, xs.unflatten(-1, heads), gp.unflatten(-1, heads), out_silu=fold,
                            gp_bias=gp_bias)
        o = o.reshape(B, N, self.value_dim)
        if act is not None and not fold:
            o = act(o)
        return self.o_proj(o) if packed_weights is None else F.linear(o, packed_weights["o"])
