"""The BiGLA FLOP formula, its registration, the grouped-conv backward fix and the model totals of spec §6."""
import pytest
import torch
import torch.nn.functional as F

from vig.bench import flops, runner
from vig.ops.bigla import bigla


def _inputs(B=2, T=5, H=3, K=4, V=8, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, T, H, K, generator=g) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g)
    gf, gb = (F.logsigmoid(torch.randn(B, T, H, K, generator=g)) for _ in range(2))
    xs = (q, k, v, gf, gb)
    return [x.requires_grad_(requires_grad) for x in xs]


def test_formula_counts_forward_and_backward_on_a_known_shape():
    B, T, H, K, V = 2, 5, 3, 4, 8
    assert flops.register_bigla_flops() == flops.register_bigla_flops()  # idempotent, no duplicate error
    xs = _inputs(B, T, H, K, V, requires_grad=True)
    _, fwd = flops.count_flops(lambda: bigla(*xs, backend="torch"))
    assert fwd["by_op"] == {"vig.bigla": 2 * 6 * B * T * H * K * V}  # 6 MACs per (token, head, k, v)
    assert fwd["bigla"] == fwd["total"] == 2 * 6 * B * T * H * K * V

    def train():
        bigla(*xs, backend="torch").sum().backward()
    _, both = flops.count_flops(train)
    assert both["by_op"]["vig.bigla_backward"] == 2 * fwd["by_op"]["vig.bigla"]
    assert both["bigla"] == 3 * fwd["bigla"]


def test_bigla_macs_matches_spec_recurrence_for_vig_tiny():
    # 12 blocks, 196 tokens, 3 heads, K=32, V=64: spec §6 gives 0.087 GMACs
    per_block = flops.bigla_macs((1, 196, 3, 32), (1, 196, 3, 64))
    assert 12 * per_block / 1e9 == pytest.approx(0.087, rel=0.01)
    assert flops.bigla_macs((1, 196, 3, 32), (1, 196, 3, 64), backward=True) == 2 * per_block


def test_grouped_conv_backward_is_not_overcounted():
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    w = torch.randn(8, 1, 3, 3, requires_grad=True)
    _, fwd = flops.count_flops(lambda: F.conv2d(x, w, padding=1, groups=8))
    _, both = flops.count_flops(lambda: F.conv2d(x, w, padding=1, groups=8).sum().backward())
    # grad_input and grad_weight each cost one forward conv (torch's own formula counts grad_weight 8x here)
    assert both["by_op"]["aten.convolution_backward"] == 2 * fwd["total"]


def test_vig_tiny_gmacs_match_spec_section_6():
    conv_linear, recurrence = flops.SPEC_GMACS_224["vig_tiny"]
    model = runner.create_model("vig_tiny", 224, device="meta")
    fwd = flops.model_flops(model, 224)
    assert fwd["bigla"] / 2e9 == pytest.approx(recurrence, rel=0.02)
    assert (fwd["total"] - fwd["bigla"]) / 2e9 == pytest.approx(conv_linear, rel=0.02)
    train = flops.model_flops(model, 224, train=True)
    assert train["bigla"] == 3 * fwd["bigla"]
    assert 2.5 * fwd["total"] < train["total"] < 3.5 * fwd["total"]  # backward ~ 2x forward


def test_traffic_counts_kernels_and_marginal_bytes_per_image():
    from vig.bench import traffic
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 16), torch.nn.ReLU())
    rows = traffic.op_traffic(model, 16, "fp32")
    # ReLU reads and writes 16 fp32 values per image; the weights are per batch and drop out
    assert rows["elementwise in ReLU"] == {"kernels": 1, "mb_per_img": pytest.approx(2 * 16 * 4 / 1e6)}
    assert sum(v["kernels"] for k, v in rows.items() if k in ("mm", "addmm")) == 1
    assert traffic.summary(rows)["elementwise_kernels"] == 1
