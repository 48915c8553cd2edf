"""weight_pack.block_weights: a plain-ViG block's weights cast once at inference (VIG_FUSED_OFF=weight_pack: off).

CPU, with the route forced (it needs CUDA): the views hold the weights cast to the autocast dtype, the merged stack
padded as stack_width pads it; a block under bf16 autocast gives the same output with the pack as without; its traced
graph casts the weights once; the rule (gradients, autocast, the route)."""
import pytest
import torch

import vig.layers.bigla_attn as attn
import vig.layers.weight_pack as pack
from vig.layers.blocks import GLABlock


def _block(dim=64, heads=2):
    torch.manual_seed(0)
    block = GLABlock(dim, heads, use_act_in_conv=True, use_out_act=True).eval()
    with torch.no_grad():
        block.attn.g_proj.bias.normal_()
        block.attn.gk_proj[1].bias.normal_()
    return block


@pytest.fixture
def forced(monkeypatch):
    """The pack and the merged projections on for CPU tensors."""
    monkeypatch.setattr(pack, "rewrite_enabled", lambda t, name: name == "weight_pack")
    monkeypatch.setattr(attn, "merges_projections", lambda mixer, xs: True)


@pytest.mark.parametrize("dim,heads", [(64, 2), (384, 6)])  # ViG-S's width pads its stack (1,168 -> 1,216 rows)
def test_views_hold_the_cast_weights(forced, dim, heads):
    block = _block(dim, heads)
    a, m = block.attn, block.mlp
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        views = pack.block_weights(block, torch.randn(1, 4, dim))
    stack = torch.cat([a.qkv_proj.weight, a.gk_proj[0].weight, a.g_proj.weight])
    assert views["stack"].shape == (attn.stack_width(stack.shape[0]), dim)
    assert torch.equal(views["stack"][:stack.shape[0]], stack.bfloat16())
    for name, w in (("gk1", a.gk_proj[1].weight), ("o", a.o_proj.weight), ("dw", a.in_proj[0].weight),
                    ("gate", m.gate_proj.weight), ("down", m.down_proj.weight)):
        assert views[name].dtype == torch.bfloat16 and torch.equal(views[name], w.bfloat16()), name


def test_block_output_is_unchanged(forced, monkeypatch):
    block = _block()
    x = torch.randn(2, 12, 64)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        packed = block(x, (3, 4))
        monkeypatch.setattr(pack, "rewrite_enabled", lambda t, name: False)
        plain = block(x, (3, 4))
    assert torch.equal(packed, plain)


PACKED = ("attn.qkv_proj.weight", "attn.gk_proj.0.weight", "attn.g_proj.weight", "attn.gk_proj.1.weight",
          "attn.o_proj.weight", "attn.in_proj.0.weight", "mlp.gate_proj.weight", "mlp.down_proj.weight")


def _weight_casts(block, x, on, monkeypatch):
    """For each cast op in the block's traced bf16 inference graph (aot_eager) that reads the GEMM / conv weights
    (directly or through views, cats and transposes of parameters alone): the set of those weights it reads."""
    from torch._functorch.aot_autograd import aot_module_simplified
    monkeypatch.setattr(pack, "rewrite_enabled", lambda t, name: on and name == "weight_pack")
    graphs = []
    name_of = {id(p): name for name, p in block.named_parameters()}

    def backend(gm, example_inputs):
        # the graph's inputs in order (parameters among them), matched to the forward graph's placeholders
        names = [name_of.get(id(t)) for t in example_inputs]

        def keep(g, _):
            graphs.append((g.graph, names))
            return g
        return aot_module_simplified(gm, example_inputs, fw_compiler=keep)
    torch._dynamo.reset()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        torch.compile(block, backend=backend, fullgraph=True)(x, (3, 4))
    casts = []
    for graph, names in graphs:
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        sources = {p: {name} for p, name in zip(placeholders, names) if name is not None}
        for n in graph.nodes:
            if n.op != "call_function" or not n.all_input_nodes:
                continue
            read = set().union(*(sources.get(a, set()) for a in n.all_input_nodes))
            if "_to_copy" in str(n.target) or "convert_element_type" in str(n.target):
                if read & set(PACKED):
                    casts.append(read & set(PACKED))
            elif all(a in sources for a in n.all_input_nodes):
                sources[n] = read
    return casts


def test_traced_block_casts_its_weights_once(forced, monkeypatch):
    """Without the pack each GEMM / conv weight is cast on its own; with it one cast reads all eight. On CUDA inductor
    writes a cat of up to 8 inputs as one kernel; on CPU its C++ kernels fuse casts into their neighbours either way,
    so the graph is what can be checked here."""
    block = _block()
    x = torch.randn(2, 12, 64)
    plain = _weight_casts(block, x, False, monkeypatch)
    assert len(plain) >= 5 and all(len(c) <= 3 for c in plain), plain  # (the stack's three in its cat)
    assert _weight_casts(block, x, True, monkeypatch) == [set(PACKED)]


def test_rule(monkeypatch):
    from vig.layers.fused import OPT_IN
    assert "weight_pack" not in OPT_IN  # on by default since session 37 (ViG-T inference +1.7% on an H100)
    block = _block()
    x = torch.randn(1, 4, 64)
    with torch.no_grad():  # meta tensors (the FLOP counters'): autocast has no state for them, never asked
        assert pack.block_weights(block, x.to("meta")) is None
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert pack.block_weights(block, x) is None  # CPU: the route needs CUDA
    monkeypatch.setattr(pack, "rewrite_enabled", lambda t, name: True)
    with torch.no_grad():
        assert pack.block_weights(block, x) is None  # no autocast: the weights are the compute dtype already
    with torch.autocast("cpu", torch.bfloat16):
        assert pack.block_weights(block, x) is None  # gradients on: training keeps the parameters' own casts
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert pack.block_weights(block, x) is not None
