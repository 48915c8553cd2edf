"""train_one_epoch's bookkeeping and evaluate's metrics, against hand computations on stand-ins (no data, no run).

train_one_epoch: the scheduler is told the number of updates done after each step (global_step + 1: the lr for the
next step), the EMA gets the step index of the update it follows, and a resumed epoch's mean loss includes the
checkpointed sums. evaluate: summed cross-entropy over the split / n, top-1 and top-5 in percent (top-k with k =
min(5, classes)), over batches of unequal size."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from vig.train.distributed import Dist
from vig.train.loop import evaluate, train_one_epoch


class Recorder:
    def __init__(self):
        self.calls = []

    def step_update(self, num_updates):
        self.calls.append(num_updates)

    def update(self, model, step):
        self.calls.append(step)


def _batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, generator=g), torch.randint(0, 5, (4,), generator=g)) for _ in range(n)]


def test_train_one_epoch_steps_schedule_ema_and_loss_sums():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 5)
    ref = copy.deepcopy(model)
    batches = _batches(3, 1)
    sched, ema = Recorder(), Recorder()
    cfg = SimpleNamespace(seed=0, epochs=2, progress=False, inject_nan_steps=[], clip_grad=None, max_bad_steps=5,
                          output="x")
    s = SimpleNamespace(cfg=cfg, dist=Dist(), device=torch.device("cpu"), amp="none", model=model, unwrapped=model,
                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=sched, mixup=None,
                        criterion=torch.nn.CrossEntropyLoss(), ema=ema,
                        scaler=torch.amp.GradScaler("cpu", enabled=False), global_step=5, bad_streak=0,
                        epoch_sums=[1.5, 1, 0])  # resumed after one batch of this epoch, whose loss was 1.5
    mean_loss, _ = train_one_epoch(s, batches, epoch=1, start_batch=1)
    assert s.global_step == 8
    assert sched.calls == [6, 7, 8] and ema.calls == [5, 6, 7]
    # the same three SGD steps by hand
    losses = []
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for x, y in batches:
        loss = F.cross_entropy(ref(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mean_loss == pytest.approx((1.5 + sum(losses)) / 4, rel=1e-6)
    torch.testing.assert_close(model.weight, ref.weight)


class Lookup(torch.nn.Module):
    """Returns fixed logits for sample i (the input holds i)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x.long()]


@pytest.mark.parametrize("classes", [7, 3])
def test_evaluate_loss_top1_top5_by_hand(classes):
    g = torch.Generator().manual_seed(0)
    n = 6
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * 3  # distinct values: no ties
    # the true class of sample i ranked r_i-th: 0 (top-1), 4 (the 5th: in top-5 only), 5 and 6 (in neither)
    wanted = [r % classes for r in (0, 4, 5, 1, 6, 3)]
    y = torch.stack([logits[i].argsort(descending=True)[r] for i, r in enumerate(wanted)])
    loader = [(torch.arange(0, 4), y[:4]), (torch.arange(4, 6), y[4:])]  # batches of 4 and 2
    res = evaluate(Lookup(logits.float()), loader, torch.device("cpu"), "none", Dist(), classes)
    nll = [-(logits[i, y[i]] - math.log(logits[i].exp().sum())) for i in range(n)]
    k = min(5, classes)
    rank = [int((logits[i] > logits[i, y[i]]).sum()) for i in range(n)]  # classes scored above the true one
    assert res["n"] == n
    assert res["loss"] == pytest.approx(float(sum(nll)) / n, rel=1e-5)
    assert res["top1"] == pytest.approx(100 * sum(r == 0 for r in rank) / n)
    assert res["top5"] == pytest.approx(100 * sum(r < k for r in rank) / n)
    assert rank == wanted
