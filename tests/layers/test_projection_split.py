"""The mixers split q|k|v and the two gates with torch.split: one autograd node (its backward is one
cat) instead of a slice per piece (each a full-size zero fill, a copy and an add), with the same values."""
import pytest
import torch

from vig.layers.bigla_attn import BiGLAttention
from vig.layers.gla2d import GLA2D


def test_split_backward_equals_slice_backward_bitwise():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, requires_grad=True)
    w = torch.randn(2, 5, 9)

    def loss(a, b, c):  # b does not reach the loss: its grad is an exact zero either way
        return (a * w[..., :2]).sum() + (c.square() * w[..., 5:]).sum()
    by_split = torch.autograd.grad(loss(*x.split((2, 3, 4), -1)), x)[0]
    by_slices = torch.autograd.grad(loss(x[..., :2], x[..., 2:5], x[..., 5:]), x)[0]
    assert torch.equal(by_split, by_slices)


def _split_node(t):
    """The autograd node that produced t, looking through view nodes (unflatten, permute, ...)."""
    node = t.grad_fn
    while node is not None and "Split" not in type(node).__name__:
        node = node.next_functions[0][0]
    return node


@pytest.mark.parametrize("kind", ["plain", "hier"])
def test_q_k_v_and_gates_come_from_one_split_node_each(kind):
    torch.manual_seed(0)
    if kind == "plain":
        q, k, v, gf, gb = BiGLAttention(32, 2).project(torch.randn(2, 12, 32, requires_grad=True), (3, 4))
    else:
        q, k, v, gf, gb = GLA2D(32, 2).project(torch.randn(2, 32, 3, 4, requires_grad=True))
    qkv = {_split_node(t) for t in (q, k, v)}
    gates = {_split_node(t) for t in (gf, gb)}
    assert len(qkv) == 1 and len(gates) == 1 and None not in qkv | gates and qkv != gates
