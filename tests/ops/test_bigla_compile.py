"""torch.compile sees BiGLA as one custom op (torch.ops.vig.bigla): no graph break, same values."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vig.ops.bigla import bigla


class TinyMixer(nn.Module):
    """q, k, v and both gates sliced out of two projections, as the ViG layers do."""

    def __init__(self, dim=16, heads=2, K=8, V=8, backend="torch"):
        super().__init__()
        self.heads, self.K, self.V, self.backend = heads, K, V, backend
        self.qkv = nn.Linear(dim, heads * (2 * K + V))
        self.gate = nn.Linear(dim, 2 * heads * K)
        self.out = nn.Linear(heads * V, dim)

    def forward(self, x):
        B, T, _ = x.shape
        H, K, V = self.heads, self.K, self.V
        qkv = self.qkv(x).view(B, T, H, 2 * K + V)
        q, k, v = qkv[..., :K], qkv[..., K:2 * K], qkv[..., 2 * K:]
        g = (F.logsigmoid(self.gate(x)) / 16).view(B, T, 2, H, K)
        o = bigla(q, k, v, g[:, :, 0], g[:, :, 1], backend=self.backend)
        return self.out(o.reshape(B, T, H * V))


def test_custom_op_is_registered_with_fake_and_backward():
    assert hasattr(torch.ops.vig, "bigla") and hasattr(torch.ops.vig.bigla, "default")
    assert hasattr(torch.ops.vig, "bigla_backward")
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        q = torch.empty(2, 5, 3, 16)
        v = torch.empty(2, 5, 3, 32)
        o = torch.ops.vig.bigla(q, q, v, q, q, 0.25, "torch")
        grads = torch.ops.vig.bigla_backward(q, q, v, q, q, o, 0.25, "torch")
    assert o.shape == (2, 5, 3, 32)
    assert [tuple(g.shape) for g in grads] == [(2, 5, 3, 16)] * 2 + [(2, 5, 3, 32)] + [(2, 5, 3, 16)] * 2


def test_no_graph_break_at_bigla():
    torch.manual_seed(0)
    model = TinyMixer()
    x = torch.randn(2, 7, 16)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_compiled_matches_eager_forward_and_grads():
    torch.manual_seed(0)
    model = TinyMixer()
    x = torch.randn(2, 9, 16, requires_grad=True)
    eager = model(x)
    eager_grads = torch.autograd.grad(eager.square().sum(), [x, *model.parameters()])
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *model.parameters()])
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_op_rejects_unknown_backend():
    q = torch.randn(1, 3, 1, 4)
    with pytest.raises(ValueError, match="backend"):
        torch.ops.vig.bigla(q, q, q, q, q, 0.5, "cuda-magic")
