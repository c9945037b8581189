"""fit(): one step equals the hand-written update; logs, mixing, warm-up, checkpoints, NaN guard."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import rsatoolbox
import torch
from torch import nn

from brainrdl.train.brain_batches import BrainBatches
from brainrdl.train.checkpoint import load_checkpoint
from brainrdl.train.functional import rdl_loss
from brainrdl.train.guards import NonFiniteLossError
from brainrdl.train.loop import fit
from brainrdl.train.losses import RDLLoss
from brainrdl.train.teachers import BrainTeacher, NetworkTeacher

torch.set_num_threads(1)  # tiny nets: extra threads only spin on a shared machine


def _student(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _data(n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


class Counting:
    """Wraps a teacher and records the batches it was asked about."""

    def __init__(self, inner):
        self.inner, self.names, self.calls = inner, inner.names, []

    def targets(self, inputs, ids=None):
        self.calls.append(ids)
        return self.inner.targets(inputs, ids)


def _brain(n=12, seed=2):
    rng = np.random.default_rng(seed)
    ids = [f"im{i}" for i in range(n)]
    rdms = rsatoolbox.rdm.RDMs(
        rng.random((1, n * (n - 1) // 2)),
        rdm_descriptors={"roi": ["IT"]},
        pattern_descriptors={"stimulus": ids},
    )
    images = torch.as_tensor(rng.standard_normal((n, 5)), dtype=torch.float32)
    return BrainTeacher(rdms), images, ids


def test_one_step_equals_manual_update():
    x, y = _data(16)
    torch.manual_seed(5)
    teacher_net = nn.Sequential(nn.Linear(5, 6), nn.Tanh())
    teacher = NetworkTeacher(teacher_net, ["1"])
    model, ref = _student(), _student()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, [(x, y)], teacher=teacher, alignment={"1": ("1", 0.7)}, optimizer=opt,
        epochs=1, progress=False)
    # by hand: CE + 0.7 * default RDL between ReLU features and the teacher's tanh features
    h = ref[1](ref[0](x))
    target = teacher_net(x).detach()
    from brainrdl.rsa.distances import pairwise_rdm

    loss = nn.functional.cross_entropy(ref(x), y) + 0.7 * rdl_loss(h, pairwise_rdm(target))
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_brain_mixing_warmup_and_log_columns():
    teacher, images, ids = _brain(n=14)
    counting = Counting(teacher)
    x, y = _data(32)
    loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]  # 4 steps per epoch
    held = (images[8:], ids[8:])
    log = fit(_student(), loader, teacher=counting, alignment={"1": "IT"},
              brain_loader=BrainBatches(images[:8], ids[:8], batch_size=4, mix_ratio=0.5),
              warmup_epochs=1, epochs=2, heldout=held, val_loader=loader, progress=False)
    train_calls = [c for c in counting.calls if len(c) == 4]
    assert len(train_calls) == 2  # warm-up epoch: none; then 4 steps x 0.5
    assert all(set(c) <= set(ids[:8]) and len(set(c)) == 4 for c in train_calls)
    assert np.isnan(log.loc[0, "align/1"]) and log.loc[1, "align/1"] > 0
    for col in ("task_loss", "task_accuracy", "val_accuracy", "heldout_rsa/1", "seconds"):
        assert col in log
    assert -1 <= log.loc[1, "heldout_rsa/1"] <= 1


def test_heldout_rsa_is_pearson_of_upper_triangles():
    teacher, images, ids = _brain(n=10)
    model = _student()
    x, y = _data(8)
    # held-out RSA uses the loss's student distance: euclidean here, as computed below
    log = fit(model, [(x, y)], teacher=teacher, alignment={"1": ("IT", 0.0)},
              loss=RDLLoss(distance="euclidean"),
              brain_loader=BrainBatches(images, ids, batch_size=5), heldout=(images, ids),
              optimizer=torch.optim.SGD(model.parameters(), lr=0.0), progress=False)
    with torch.no_grad():
        h = model[1](model[0](images)).double()
    d = ((h[:, None] - h[None]) ** 2).sum(-1) / h.shape[1]
    iu = np.triu_indices(10, 1)
    r = np.corrcoef(d.numpy()[iu], teacher.rdms[0].numpy()[iu])[0, 1]
    assert log.loc[0, "heldout_rsa/1"] == pytest.approx(r, rel=1e-6)


def test_nonfinite_loss_names_the_term():
    teacher, images, ids = _brain()
    x, y = _data(8)
    model = _student()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises((NonFiniteLossError, ValueError), match=r"task_loss|1"):
        fit(model, [(x, y)], teacher=teacher, alignment={"1": "IT"},
            brain_loader=BrainBatches(images, ids, batch_size=4), progress=False)
    with pytest.raises(NonFiniteLossError, match="task_loss"):
        fit(model, [(x, y)], progress=False)


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    teacher, images, ids = _brain()
    x, y = _data(16)
    loader = [(x[:8], y[:8]), (x[8:], y[8:])]
    kw = dict(teacher=teacher, alignment={"1": "IT"},
              brain_loader=BrainBatches(images, ids, batch_size=6), progress=False, lr=0.01)
    straight = _student()
    log_a = fit(straight, loader, epochs=3, **kw)
    resumed = _student()
    fit(resumed, loader, epochs=2, checkpoint_dir=tmp_path, **kw)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and state["acc"] is None and not list(tmp_path.glob("*.tmp"))
    log_b = fit(resumed, loader, epochs=3, checkpoint_dir=tmp_path, resume=True, **kw)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(log_a["task_loss"], log_b["task_loss"], rtol=1e-6)


def test_separate_bn_keeps_task_statistics():
    teacher, images, ids = _brain()
    x, y = _data(8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    ref = copy.deepcopy(model)
    fit(model, [(x, y)], teacher=teacher, alignment={"2": "IT"},
        brain_loader=BrainBatches(images + 10.0, ids, batch_size=6, separate_bn=True),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0), progress=False)
    ref.train()
    ref(x)  # the task batch alone
    torch.testing.assert_close(model[1].running_mean, ref[1].running_mean)


def test_argument_errors():
    teacher, images, ids = _brain()
    x, y = _data(8)
    with pytest.raises(KeyError, match="IT"):
        fit(_student(), [(x, y)], teacher=teacher, alignment={"1": "V4"}, progress=False)
    with pytest.raises(ValueError, match="alignment"):
        fit(_student(), [(x, y)], teacher=teacher, progress=False)
    with pytest.raises(KeyError, match="valid names"):
        fit(_student(), [(x, y)], teacher=teacher, alignment={"relu": "IT"}, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(_student(), [(x, y)], epochs=0)
    with pytest.raises(TypeError, match="features"):
        from brainrdl.train.losses import PKTLoss

        fit(_student(), [(x, y)], teacher=teacher, alignment={"1": "IT"}, loss=PKTLoss(),
            brain_loader=BrainBatches(images, ids, batch_size=4), progress=False)


def test_default_loss_is_rdl():
    assert (RDLLoss().distance, RDLLoss().comparison) == ("correlation", "pearson")


def test_uncovered_ids_raise_or_warn_once_and_heldout_must_be_covered():
    import warnings

    teacher, images, ids = _brain(n=12)
    x, y = _data(16)
    # integer positions against string ids: every id uncovered -> an error, not a zero loss
    loader = [(images[:6], y[:6], torch.arange(6))]
    with pytest.raises(ValueError, match=r"none of the batch's 6 ids .* 0 \(int\) .* 'im0'"):
        fit(_student(), loader, teacher=teacher, alignment={"1": "IT"}, progress=False)
    loader = [(images[:6], y[:6], [*ids[:4], "x1", "x2"])] * 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = fit(_student(), loader, teacher=teacher, alignment={"1": "IT"}, epochs=2,
                  progress=False)
    msgs = [str(w.message) for w in caught if "not covered" in str(w.message)]
    assert len(msgs) == 1 and "2 of the batch's 6" in msgs[0] and "'x1'" in msgs[0]
    assert (log["align/1"] > 0).all()
    with pytest.raises(ValueError, match="heldout"):
        fit(_student(), [(x, y)], teacher=teacher, alignment={"1": "IT"},
            brain_loader=BrainBatches(images, ids, batch_size=4), heldout=(images[:3], [0, 1, 2]),
            progress=False)
    with pytest.raises(ValueError, match=r"heldout.*1 of the 3"):
        fit(_student(), [(x, y)], teacher=teacher, alignment={"1": "IT"},
            brain_loader=BrainBatches(images, ids, batch_size=4),
            heldout=(images[:3], [*ids[:2], "zz"]), progress=False)


def test_knowledge_projection_on_conv_maps_trains_projection():
    from brainrdl.train.losses import KnowledgeProjection

    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 8, 8), torch.randint(0, 3, (64,))
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    student = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 3)
    )
    teacher = NetworkTeacher(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()), ["1"])
    kp = KnowledgeProjection(16, 8)
    w0 = kp.proj.weight.detach().clone()
    log = fit(student, loader, teacher=teacher, alignment={"1": ("1", 1.0, kp)}, epochs=4,
              lr=1e-2, progress=False)  # fmt: skip
    assert not torch.equal(kp.proj.weight.detach(), w0)  # the projection was trained
    kp_loss = log["align/1"].tolist()
    assert all(b < a for a, b in itertools.pairwise(kp_loss)), kp_loss
    # the teacher target keeps its conv maps; its features stay flattened by default
    t = teacher.targets(x[:4])["1"]
    assert tuple(t.maps.shape) == (4, 16, 8, 8) and tuple(t.features.shape) == (4, 1024)

    # a given optimizer must hold the projection's parameters
    other = KnowledgeProjection(16, 8)
    with pytest.raises(ValueError, match="KnowledgeProjection"):
        fit(student, loader, teacher=teacher, alignment={"1": ("1", 1.0, other)},
            optimizer=torch.optim.SGD(student.parameters(), lr=0.1), progress=False)  # fmt: skip
    opt = torch.optim.SGD([*student.parameters(), *other.parameters()], lr=0.1)
    fit(student, loader, teacher=teacher, alignment={"1": ("1", 1.0, other)}, optimizer=opt,
        progress=False, max_steps_per_epoch=1)  # fmt: skip
