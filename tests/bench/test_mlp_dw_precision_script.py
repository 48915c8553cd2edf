"""benchmarks/device/mlp_dw_precision.py (session 49's probe of the MLP op's weight-gradient error) runs only on a GPU;
here its float64 oracle is checked against autograd, and its error measure against a hand-computed case."""
import torch
import torch.nn.functional as F
from bench_scripts import load_script


def test_exact_dh_is_autograds_gradient_of_h():
    probe = load_script("mlp_dw_precision", "device")
    gen = torch.Generator().manual_seed(0)
    x, w, dy = (torch.randn(7, 5, generator=gen), torch.randn(8, 5, generator=gen), torch.randn(7, 4, generator=gen))
    h = (x.double() @ w.double().t()).requires_grad_()
    a, b = h.chunk(2, -1)
    (F.silu(a) * b).backward(dy.double())
    torch.testing.assert_close(probe.exact_dh(x, w, dy), h.grad, rtol=1e-12, atol=1e-12)


def test_rel_is_rms_error_over_rms_reference():
    probe = load_script("mlp_dw_precision", "device")
    exact = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert abs(probe.rel(torch.tensor([3.0, 3.0]), exact) - (0.5 ** 0.5) / (12.5 ** 0.5)) < 1e-12


def test_linear_shapes_leave_out_the_head():
    probe = load_script("mlp_dw_precision", "device")
    shapes = probe.linear_shapes("deit_tiny_patch16_224")
    assert sorted(shapes) == [(192, 192), (192, 768), (576, 192), (768, 192)]
    assert len(shapes[(576, 192)]) == 12 and shapes[(576, 192)][0] == "blocks.0.attn.qkv"


def test_linear_wgrad_is_exact_in_float64():
    probe = load_script("mlp_dw_precision", "device")
    row = probe.linear_wgrad(37, 6, 5, torch.float64, device="cpu")
    assert (row["rows"], row["out"], row["in"], row["dtype"]) == (37, 6, 5, "float64")
    assert row["f_linear"] < 1e-12 and row["weight_grad"] < 1e-12
    assert probe.linear_wgrad(37, 6, 5, torch.bfloat16, device="cpu")["f_linear"] > 1e-4
