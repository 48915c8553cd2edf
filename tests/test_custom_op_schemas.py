"""The vig:: custom ops' schemas, pinned. AOTAutograd's cache is keyed on the forward graph, which names only the
forward ops; a compiled backward is cached with it. So when a registered backward op's schema changes and its
forward op's does not, a warm inductor cache (/tmp/torchinductor_$USER) serves a backward compiled for the old
schema: seen in session 24, when the gate backward's outputs went from five to four (a size assertion in the cached
code until the cache was cleared). A user who upgrades vig keeps that cache. Changing a schema therefore needs a new
name for the forward op as well (e.g. vig::gated_norm_blend_v2), which gives the compiled graphs a new key; then
update this table."""
import importlib

import torch

OP_MODULES = ("vig.ops.bigla.custom_op", "vig.ops.bigla.packed", "vig.layers.fused.gate_op",
              "vig.layers.fused.swiglu_op", "vig.layers.fused.add_rmsnorm_op",
              "vig.layers.fused.linear_swiglu_op", "vig.layers.fused.stem_op",
              "vig.layers.fused.low_rank_op", "vig.layers.fused.low_rank_gate_op")
SCHEMAS = {
    "vig::bigla": "(Tensor q, Tensor k, Tensor v, Tensor g_fwd, Tensor g_bwd, float scale, str backend, "
                  "float? gate_normalizer=None) -> Tensor",
    "vig::bigla_backward": "(Tensor q, Tensor k, Tensor v, Tensor g_fwd, Tensor g_bwd, Tensor do, float scale, "
                           "str backend, float? gate_normalizer=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "vig::bigla_packed": "(Tensor qkv, Tensor g, SymInt num_heads, SymInt head_k_dim, float scale, "
                         "float? gate_normalizer=None) -> Tensor",
    "vig::bigla_packed_backward": "(Tensor qkv, Tensor g, Tensor do, SymInt num_heads, SymInt head_k_dim, "
                                  "float scale, float? gate_normalizer=None) -> (Tensor, Tensor)",
    "vig::bigla_packed_saved_keys": "(Tensor qkv, Tensor g, SymInt num_heads, SymInt head_k_dim, float scale, "
                                    "float? gate_normalizer=None) -> (Tensor, Tensor)",
    "vig::bigla_packed_saved_keys_backward": "(Tensor qkv, Tensor g, Tensor key_states, Tensor do, SymInt num_heads, "
                                             "SymInt head_k_dim, float scale, float? gate_normalizer=None) "
                                             "-> (Tensor, Tensor)",
    # gp_bias (session 35) is a trailing optional input of the forward alone: graphs cached before it call the op
    # without it, which still means no bias, and the backward op's schema is unchanged
    "vig::gated_norm_blend": "(Tensor o, Tensor loc, Tensor gp, Tensor wg, Tensor wl, float eps, bool out_silu, "
                             "Tensor? gp_bias=None) -> (Tensor, Tensor, Tensor)",
    "vig::gated_norm_blend_backward": "(Tensor dout, Tensor o, Tensor loc, Tensor gp, Tensor wg, Tensor wl, "
                                      "Tensor r_o, Tensor r_l, bool out_silu) "
                                      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "vig::swiglu": "(Tensor h, SymInt dim) -> Tensor",
    "vig::swiglu_backward": "(Tensor h, Tensor dout, SymInt dim) -> Tensor",
    "vig::linear_swiglu": "(Tensor x, Tensor w) -> Tensor",
    "vig::linear_swiglu_dh": "(Tensor x, Tensor w, Tensor dy) -> Tensor",
    # inference only (session 36): no backward op
    "vig::stem_conv_norm_silu": "(Tensor x, Tensor wm, Tensor we, Tensor bias, Tensor ln_w, Tensor ln_b, "
                                "SymInt[] kernel, SymInt[] stride, float eps) -> Tensor",
    # inference only (session 37): no backward op
    "vig::low_rank_linear": "(Tensor a, Tensor w, Tensor bias) -> Tensor",
    "vig::low_rank_gate": "(Tensor x, Tensor w0, Tensor w1, Tensor bias) -> Tensor",
    "vig::low_rank_gate_bwd": "(Tensor dy, Tensor x, Tensor w0, Tensor w1) -> (Tensor, Tensor)",
    "vig::add_rms_norm": "(Tensor x, Tensor y, Tensor weight, float eps, ScalarType n_dtype) "
                         "-> (Tensor, Tensor, Tensor)",
    "vig::add_rms_norm_backward": "(Tensor s, Tensor weight, Tensor rstd, Tensor ds, Tensor dn, "
                                  "ScalarType dy_dtype) -> (Tensor, Tensor, Tensor)",
}


def test_custom_op_schemas_are_pinned():
    for module in OP_MODULES:
        importlib.import_module(module)
    found = {s.name: str(s)[len(s.name):] for s in torch._C._jit_get_all_schemas() if s.name.startswith("vig::")}
    changed = {name: (SCHEMAS.get(name), schema) for name, schema in found.items() if SCHEMAS.get(name) != schema}
    assert not changed, ("vig:: op schemas changed (pinned, now); a changed schema needs a new forward op name "
                         f"(module docstring): {changed}")
    assert set(SCHEMAS) <= set(found), f"pinned ops no longer registered: {set(SCHEMAS) - set(found)}"
