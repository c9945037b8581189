"""fit names every non-finite or degenerate case, and stops runaway training (issue 10 items 1, 6).
"""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from torch import nn

import brainrdl
from brainrdl.train.brain_batches import BrainBatches
from brainrdl.train.losses import RDLLoss
from brainrdl.train.teachers import BrainTeacher, NetworkTeacher

torch.set_num_threads(1)


def _student(seed=0, width=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, 3))


def _data(n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def _rdms(n=12, seed=2, values=None, ids=None):
    rng = np.random.default_rng(seed)
    vec = rng.random((1, n * (n - 1) // 2)) if values is None else values
    return rsatoolbox.rdm.RDMs(vec, rdm_descriptors={"roi": ["IT"]},
                               pattern_descriptors={"stimulus": ids or list(range(n))})  # fmt: skip


def _brain(n=12):
    images = torch.as_tensor(np.random.default_rng(3).standard_normal((n, 5)), dtype=torch.float32)
    return BrainTeacher(_rdms(n)), images, list(range(n))


def test_nonfinite_error_is_exported_and_a_floating_point_error():
    assert issubclass(brainrdl.NonFiniteLossError, FloatingPointError)
    assert issubclass(brainrdl.TrainingDivergedError, brainrdl.NonFiniteLossError)


def test_nan_inside_an_alignment_loss_names_term_layer_epoch_step():
    teacher, images, ids = _brain()
    x, y = _data(16)
    loader = [(x[:8], y[:8]), (x[8:], y[8:])]

    class NaNAfter(nn.Module):  # student features turn NaN at its 8th call
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, h):
            self.calls += 1
            return h * float("nan") if self.calls == 8 else h  # epoch 1, step 1, brain

    model = _student()
    model.insert(2, NaNAfter())  # after the ReLU "1"; the tapped layer is "2"
    # two forward passes per step (task batch, brain batch), two steps per epoch
    with pytest.raises(brainrdl.NonFiniteLossError) as info:
        brainrdl.fit(model, loader, teacher=teacher, alignment={"2": "IT"},
                     brain_loader=BrainBatches(images, ids, batch_size=6), epochs=2,
                     progress=False)  # fmt: skip
    err = info.value
    assert (err.term, err.layer, err.epoch, err.step) == ("align/2", "2", 1, 1)
    assert "'align/2'" in str(err) and "epoch 1, step 1" in str(err)


def test_huge_weight_is_blamed_on_the_alignment_term_not_the_task():
    teacher, images, ids = _brain()
    x, y = _data(16)
    with pytest.raises(brainrdl.NonFiniteLossError, match=r"'align/1'.*weight 1e\+39") as info:
        brainrdl.fit(_student(), [(x, y)], teacher=teacher, alignment={"1": ("IT", 1e39)},
                     brain_loader=BrainBatches(images, ids, batch_size=6), progress=False)
    assert info.value.term == "align/1" and info.value.step == 0


def test_nan_task_loss_is_named_and_the_model_is_not_updated():
    x, y = _data(8)
    model = _student()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    before = model[2].weight.detach().clone()
    with pytest.raises(brainrdl.NonFiniteLossError, match="'task_loss' is nan at epoch 0, step 0"):
        brainrdl.fit(model, [(x, y)], progress=False)
    assert torch.equal(model[2].weight, before)  # checked before the optimiser step


@pytest.mark.parametrize(
    ("values", "match"),
    [(np.full((1, 66), np.nan), "no finite dissimilarity"), (np.full((1, 66), 0.7), "constant")],
)
def test_degenerate_brain_rdms_are_refused_when_the_teacher_is_built(values, match):
    with pytest.raises(ValueError, match=f"target 'IT'.*{match}"):
        BrainTeacher(_rdms(12, values=values))


def test_degenerate_network_teacher_layer_is_refused_on_its_first_batch():
    dead = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)  # every unit dead: all-zero features, a constant RDM
    x, y = _data(16)
    with pytest.raises(ValueError, match=r"NetworkTeacher layer '1'.*constant"):
        brainrdl.fit(_student(), [(x, y)], teacher=NetworkTeacher(dead, ["1"]),
                     alignment={"1": "1"}, progress=False)  # fmt: skip


def test_duplicate_brain_ids_are_refused():
    teacher, images, ids = _brain()
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"repeated brain-stimulus ids.*e\.g\. 3"):
        brainrdl.fit(_student(), [(x, y)], teacher=teacher, alignment={"1": "IT"},
                     brain_loader=(images, [*ids[:-1], 3]), progress=False)  # fmt: skip
    # a user loader whose batches repeat a stimulus
    repeating = [(images[:4], torch.tensor([0, 1, 1, 2]))]
    with pytest.raises(ValueError, match="repeats stimulus 1"):
        brainrdl.fit(_student(), [(x, y)], teacher=teacher, alignment={"1": "IT"},
                     brain_loader=repeating, progress=False)  # fmt: skip


def test_too_small_final_batches_are_skipped_and_counted():
    x, y = _data(19)
    loader = [(x[:8], y[:8]), (x[8:16], y[8:16]), (x[16:18], y[16:18]), (x[18:], y[18:])]
    torch.manual_seed(5)
    teacher = NetworkTeacher(nn.Sequential(nn.Linear(5, 6), nn.Tanh()), ["1"])
    log = brainrdl.fit(_student(), loader, teacher=teacher, alignment={"1": "1"}, epochs=2,
                       progress=False)  # fmt: skip
    assert log["align_skipped"].tolist() == [2, 2]  # the batches of 2 and of 1 item
    assert (log["align/1"] > 0).all() and np.isfinite(log["task_loss"]).all()
    # a brain teacher with ids on the task batches: same
    brain, _, _ = _brain(19)
    ids = torch.arange(19)
    loader = [(x[:17], y[:17], ids[:17]), (x[17:], y[17:], ids[17:])]
    log = brainrdl.fit(_student(), loader, teacher=brain, alignment={"1": "IT"}, progress=False)
    assert log.loc[0, "align_skipped"] == 1 and log.loc[0, "align/1"] > 0


def _runaway_setup():
    n = 24
    teacher = BrainTeacher(_rdms(n, seed=0))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] > 0).long()
    images = torch.randn(n, 10, generator=g)
    loader = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 2))  # fmt: skip
    kw = dict(teacher=teacher, alignment={"3": "IT"}, epochs=8, lr=3e-2, progress=False,
              brain_loader=BrainBatches(images, list(range(n)), batch_size=n))  # fmt: skip
    return model, loader, kw


def test_paper_form_under_adam_runs_away_and_is_stopped_with_advice():
    model, loader, kw = _runaway_setup()
    with pytest.raises(brainrdl.TrainingDivergedError) as info:
        brainrdl.fit(model, loader, loss=RDLLoss(comparison="paper"), **kw)
    text = str(info.value)
    assert "'align/3'" in text and "fold" in text and "task loss went from" in text
    assert "comparison='pearson'" in text and "weight" in text and "learning rate" in text
    assert info.value.epoch < 8
    # without the watch the same run ends "normally", with a term ~1e6 times its start
    model, loader, kw = _runaway_setup()
    log = brainrdl.fit(model, loader, loss=RDLLoss(comparison="paper"), runaway=None, **kw)
    assert log["align/3"].iloc[-1] > 1e4 * log["align/3"].iloc[0]


def test_a_healthy_run_is_not_stopped():
    model, loader, kw = _runaway_setup()
    log = brainrdl.fit(model, loader, loss=RDLLoss(comparison="pearson"), **kw)
    assert len(log) == 8 and log["task_loss"].iloc[-1] < log["task_loss"].iloc[0]


def test_one_host_transfer_per_step_for_all_checks_and_the_log(monkeypatch):
    """Every finiteness check and the log share one device-to-host transfer per step.

    Counted on CPU: every Tensor -> Python conversion (``tolist``, ``item``, ``bool``,
    ``float``, ``int``) while fit runs 4 steps of task + 2 alignment terms, with a loss and a
    teacher that convert nothing themselves. The old loop converted 3 times per term per step.
    """
    from brainrdl.train.teachers import Target

    class Fixed:
        names = ("a", "b")

        def targets(self, x, ids=None):
            rdm = torch.cdist(x, x) ** 2
            mask = ~torch.eye(x.shape[0], dtype=torch.bool)
            return {"a": Target(rdm, mask), "b": Target(rdm, mask)}

    class Quiet:
        consumes = "rdm"

        def __call__(self, student, rdm, mask):
            s = torch.cdist(student, student) ** 2
            return ((s - rdm) ** 2 * mask).mean()

    x, y = _data(32)
    loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    model = _student()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    counts = {"n": 0}
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            counts["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    log = brainrdl.fit(model, loader, teacher=Fixed(), alignment={"0": "a", "1": ("b", 0.5)},
                       loss=Quiet(), optimizer=opt, progress=False, runaway=None)  # fmt: skip
    monkeypatch.undo()
    assert counts["n"] == 4, counts
    assert np.isfinite(log[["task_loss", "align/0", "align/1", "task_accuracy"]]).all(axis=None)
