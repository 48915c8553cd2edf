"""ViG-H with set_grad_checkpointing(True): hooks on a stage's `layers.N.blocks` (what feature_info names, so what
features_only's feature_cls='hook' and Grad-CAM hook) still fire. timm's checkpoint_seq runs the blocks one by one
and never calls the stage, so the hook-based feature net returned an empty list."""
import timm
import torch

import vig.models  # noqa: F401  (registers the models)

SMALL = dict(dims=(16, 32), depths=(1, 1), num_heads=(1, 2), drop_path_rate=0.0)


def test_hook_features_survive_grad_checkpointing():
    torch.manual_seed(0)
    feats = timm.create_model("vig_h_tiny", features_only=True, feature_cls="hook", **SMALL).train()
    x = torch.randn(2, 3, 32, 32)
    ref = feats(x)
    feats.body.set_grad_checkpointing(True)
    out = feats(x)
    assert [o.shape for o in out] == [o.shape for o in ref] == [(2, 16, 8, 8), (2, 32, 4, 4)]
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r)
    sum(o.sum() for o in out).backward()  # the stage checkpointed whole still trains
    assert all(p.grad is not None for p in feats.body.layers.parameters())


def test_a_hooked_stage_checkpoints_to_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model("vig_h_tiny", num_classes=3, **SMALL).train()
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    seen = []
    model.layers[0].blocks.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    assert seen and seen[0] == (2, 16, 8, 8)
    for p, r in zip(model.parameters(), ref):
        torch.testing.assert_close(p.grad, r)
