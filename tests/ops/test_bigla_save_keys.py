"""The forward saves its key states for the backward (config.save_key_states; on by default,
VIG_BIGLA_SAVE_KEY_STATES=0 turns it off). Its numbers are checked against the oracle in test_triton_interpret.py
(savekeys_*, and fourwalks_* with it off) and on the GPU in test_triton_gpu.py; here: where it applies, its knob's
errors, and that only a grad-recording eager call takes it."""
import pytest
import torch

from vig.ops.bigla import triton_call

KNOB = "VIG_BIGLA_SAVE_KEY_STATES"


def _qv(T, K, V, B=2, H=3):
    return torch.empty(B, T, H, K), torch.empty(B, T, H, V)


@pytest.fixture
def launch(monkeypatch):
    from vig.ops.bigla.triton import launch
    for knob in ("VIG_BIGLA_PATH", "VIG_BIGLA_BT", "VIG_BIGLA_CHUNK", "VIG_BIGLA_CHUNK_BWD", "VIG_BIGLA_SEGMENT",
                 "VIG_BIGLA_FWD_TILE"):
        monkeypatch.delenv(knob, raising=False)
    return launch


def test_applies_where_the_seq_forward_walks_the_backwards_chunks(launch, monkeypatch):
    from vig.ops.bigla.triton import config
    monkeypatch.delenv(KNOB, raising=False)
    assert config.save_key_states(*_qv(196, 32, 64))  # ViG-T/S/B at 224: 16-token chunks both ways
    assert config.save_key_states(*_qv(1, 32, 64))
    assert not config.save_key_states(*_qv(33, 64, 64))  # states larger than the measured ones
    monkeypatch.setenv(KNOB, "0")
    assert not config.save_key_states(*_qv(196, 32, 64))
    monkeypatch.setenv(KNOB, "1")
    assert not config.save_key_states(*_qv(196, 16, 32))  # ViG-H: 32-token backward chunks
    assert not config.save_key_states(*_qv(49, 16, 32))  # ... and the block-pair forward
    assert not config.save_key_states(*_qv(257, 32, 64))  # the chunk forward
    assert not config.save_key_states(*_qv(196, 128, 128))  # the seq backward
    monkeypatch.setenv("VIG_BIGLA_CHUNK_BWD", "32")
    assert not config.save_key_states(*_qv(196, 32, 64))
    monkeypatch.setenv(KNOB, "yes")
    with pytest.raises(ValueError, match=KNOB):
        config.save_key_states(*_qv(196, 32, 64))


def test_bigla_fwd_refuses_save_keys_where_it_does_not_apply(launch, monkeypatch):
    monkeypatch.setattr(launch, "check_supported", lambda q, v: None)
    monkeypatch.setenv(KNOB, "1")
    q, v = _qv(300, 32, 64)
    with pytest.raises(ValueError, match="save_keys"):
        launch.bigla_fwd(q, q, v, q, q, 0.2, save_keys=True)


def test_only_a_recording_eager_call_saves_the_key_states(launch, monkeypatch):
    monkeypatch.delenv(KNOB, raising=False)
    q, v = _qv(196, 32, 64)
    leaf = q.clone().requires_grad_()
    assert triton_call.saves_key_states(leaf, q, v, q, q)
    assert not triton_call.saves_key_states(q, q, v, q, q)  # nothing needs a gradient
    with torch.no_grad():
        assert not triton_call.saves_key_states(leaf, q, v, q, q)
    monkeypatch.setenv(KNOB, "0")
    assert not triton_call.saves_key_states(leaf, q, v, q, q)


def test_the_choice_traces_into_one_graph(launch, monkeypatch):
    """Under torch.compile the packed op picks vig::bigla_packed_saved_keys from the same check: it must trace
    without a graph break, and follow grad mode."""
    monkeypatch.delenv(KNOB, raising=False)
    q, v = _qv(196, 32, 64)
    leaf = q.clone().requires_grad_()

    def pick(x):
        return x * 2 if triton_call.saves_key_states(x, x, v, x, x) else x * 3
    torch._dynamo.reset()
    compiled = torch.compile(pick, fullgraph=True, backend="eager")
    assert torch.equal(compiled(leaf.detach().fill_(1.0).requires_grad_()), torch.full_like(q, 2.0))
    with torch.no_grad():
        assert torch.equal(compiled(leaf.detach().fill_(1.0)), torch.full_like(q, 3.0))


def test_the_backward_refuses_key_states_of_other_chunks(launch, monkeypatch):
    """Key states saved at one chunk length cannot serve a backward at another (VIG_BIGLA_CHUNK_BWD changed in
    between): a ValueError naming the knob, before any launch."""
    monkeypatch.setattr(launch, "chunk_bwd_kernel", None)  # a launch would fail with a TypeError, not the check
    q, v = _qv(196, 32, 64)
    stale = torch.empty(2, 7, q.shape[0] * q.shape[2], 32, 64)  # 32-token chunks; the backward's 16 need 13
    with pytest.raises(ValueError, match="13.*VIG_BIGLA_CHUNK_BWD"):
        launch._chunk_bwd(v, q, q, v, q, q, 0.2, None, key_states=stale)

