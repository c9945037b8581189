"""fit's options: precision, held-out monitoring, brain batches, RDL-only, the loss convention."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch
from torch import nn

import brainrdl
from brainrdl.train.brain_batches import BrainBatches
from brainrdl.train.losses import RDLLoss
from brainrdl.train.monitor import Heldout
from brainrdl.train.precision import OuterAutocastError
from brainrdl.train.teachers import BrainTeacher

torch.set_num_threads(1)


def _student(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def _task(n=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, n, 16)]


def _rdms(n, seed, ids, name="IT"):
    rng = np.random.default_rng(seed)
    return rsatoolbox.rdm.RDMs(rng.random((2, n * (n - 1) // 2)),
                               rdm_descriptors={"roi": [name, name]},
                               pattern_descriptors={"stimulus": ids})  # fmt: skip


# ------------------------------------------------------------------ precision


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cpu_lowers_the_loss_like_float32(precision):
    loader = _task()
    logs = {}
    for p in ("32", precision):
        logs[p] = brainrdl.fit(_student(), loader, epochs=6, lr=1e-2, precision=p, progress=False)
    full, half = logs["32"]["task_loss"], logs[precision]["task_loss"]
    assert half.iloc[-1] < 0.7 * half.iloc[0]  # it trains (an outer autocast froze it)
    assert abs(half.iloc[-1] - full.iloc[-1]) < 0.1 * full.iloc[0]


def test_alignment_is_computed_in_float32_under_bf16():
    seen = []

    class Spy(RDLLoss):
        def forward(self, student, target, mask=None):
            seen.append((student.dtype, target.dtype, torch.is_autocast_enabled("cpu")))
            return super().forward(student, target, mask)

    ids = list(range(10))
    teacher = BrainTeacher(_rdms(10, 0, ids))
    images = torch.randn(10, 5)
    brainrdl.fit(_student(), _task(32), teacher=teacher, alignment={"1": "IT"}, loss=Spy(),
                 brain_loader=(images, ids), precision="bf16", progress=False)  # fmt: skip
    assert seen and all(s == (torch.float32, torch.float32, False) for s in seen)


def test_fit_inside_an_outer_autocast_is_refused():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(OuterAutocastError, match="precision='bf16'"):
            brainrdl.fit(_student(), _task(32), progress=False)
    with pytest.raises(ValueError, match="precision"):
        brainrdl.fit(_student(), _task(32), precision="16", progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains_with_brain_alignment(precision):
    ids = list(range(24))
    teacher = BrainTeacher(_rdms(24, 0, ids))
    images = torch.randn(24, 5)
    logs = {}
    for p in ("32", precision):
        logs[p] = brainrdl.fit(_student(), _task(), teacher=teacher, alignment={"1": "IT"},
                               loss=RDLLoss(comparison="pearson"), epochs=6, lr=1e-2,
                               brain_loader=BrainBatches(images, ids, batch_size=12),
                               precision=p, device="cuda", progress=False)  # fmt: skip
    half = logs[precision]
    assert half["task_loss"].iloc[-1] < 0.7 * half["task_loss"].iloc[0]
    assert half["align/1"].iloc[-1] < half["align/1"].iloc[0]
    assert abs(half["task_loss"].iloc[-1] - logs["32"]["task_loss"].iloc[-1]) < 0.1


# ------------------------------------------------------------------ held-out monitoring


def test_heldout_rdm_sets_the_teacher_does_not_cover_any_method_two_targets():
    train_ids, held_ids = list(range(12)), list(range(100, 110))
    teacher = BrainTeacher(_rdms(12, 0, train_ids))  # covers only the training stimuli
    human, monkey = _rdms(10, 1, held_ids, "IT"), _rdms(10, 2, held_ids, "IT")
    g = torch.Generator().manual_seed(3)
    train_images, held_images = torch.randn(12, 5, generator=g), torch.randn(10, 5, generator=g)
    spec = Heldout(held_images, held_ids, targets={"human_IT": human, "monkey_IT": monkey},
                   method=["spearman", "corr"], distance="correlation")  # fmt: skip
    model = _student()
    log = brainrdl.fit(model, _task(32), teacher=teacher, alignment={"1": "IT"}, epochs=2,
                       brain_loader=(train_images, train_ids), heldout=spec,
                       progress=False)  # fmt: skip
    cols = sorted(c for c in log if c.startswith("heldout"))
    assert cols == ["heldout_rsa/human_IT/1", "heldout_rsa/monkey_IT/1",
                    "heldout_spearman/human_IT/1", "heldout_spearman/monkey_IT/1"]  # fmt: skip
    # the last epoch's score equals rsatoolbox on the layer's RDM and the mean held-out RDM
    with torch.no_grad():
        h = model[1](model[0](held_images)).double().numpy()
    layer = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(h), method="correlation")
    for label, rdms in (("human_IT", human), ("monkey_IT", monkey)):
        mean = rsatoolbox.rdm.RDMs(rdms.get_vectors().mean(0, keepdims=True))
        for method, key in (("spearman", "heldout_spearman"), ("corr", "heldout_rsa")):
            ref = rsatoolbox.rdm.compare(layer, mean, method=method)[0, 0]
            assert log[f"{key}/{label}/1"].iloc[-1] == pytest.approx(ref, abs=1e-5)


def test_heldout_for_a_task_only_baseline_and_errors():
    held_ids = list(range(10))
    spec = Heldout(torch.randn(10, 5), held_ids, targets=_rdms(10, 1, held_ids), layers=["1"])
    log = brainrdl.fit(_student(), _task(32), heldout=spec, progress=False)
    assert "heldout_rsa/IT/1" in log and np.isfinite(log["heldout_rsa/IT/1"]).all()
    bad = Heldout(torch.randn(3, 5), [0, 1, 99], targets=_rdms(10, 1, held_ids), layers=["1"])
    with pytest.raises(ValueError, match=r"heldout: 1 of the 3 .*99"):
        brainrdl.fit(_student(), _task(32), heldout=bad, progress=False)
    with pytest.raises(ValueError, match="without a teacher"):
        brainrdl.fit(_student(), _task(32), heldout=(torch.randn(3, 5), [0, 1, 2]),
                     progress=False)  # fmt: skip


# ------------------------------------------------------------------ brain batches, RDL-only


def test_rdl_only_training_from_plain_inputs_and_ids_with_augmentation():
    ids = [f"s{i}" for i in range(16)]
    teacher = BrainTeacher(_rdms(16, 0, ids))
    images = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    drawn = []

    def augment(image):
        drawn.append(1)
        return image + 0.01 * torch.randn_like(image)

    brain = BrainBatches(images, ids, batch_size=8, steps_per_epoch=5, transform=augment)
    model = _student()
    log = brainrdl.fit(model, teacher=teacher, alignment={"1": "IT"}, brain_loader=brain,
                       loss=RDLLoss(comparison="pearson"), epochs=6, lr=1e-2,
                       progress=False)  # fmt: skip
    assert len(drawn) == 6 * 5 * 8  # every brain image augmented each time it is drawn
    assert log["task_loss"].isna().all() and log["task_accuracy"].isna().all()
    assert log["align/1"].iloc[-1] < log["align/1"].iloc[0]


def test_several_brain_batches_per_task_step():
    ids = list(range(12))
    calls = []

    class Count:
        def __init__(self, inner):
            self.inner, self.names = inner, inner.names

        def targets(self, x, i=None):
            calls.append(len(x))
            return self.inner.targets(x, i)

    teacher = Count(BrainTeacher(_rdms(12, 0, ids)))
    brainrdl.fit(_student(), _task(32), teacher=teacher, alignment={"1": "IT"},
                 brain_loader=BrainBatches(torch.randn(12, 5), ids, batch_size=4, mix_ratio=2),
                 progress=False)  # fmt: skip
    assert calls == [4] * 4  # 2 task steps x 2 brain batches each


def test_brain_batches_options_are_checked():
    with pytest.raises(ValueError, match="mix_ratio"):
        BrainBatches(torch.zeros(4, 2), [0, 1, 2, 3], mix_ratio=-1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        BrainBatches(torch.zeros(4, 2), [0, 1, 2, 3], steps_per_epoch=0)
    with pytest.raises(ValueError, match="own transforms"):
        BrainBatches([(torch.zeros(4, 2), torch.arange(4))], transform=lambda im: im)
    with pytest.raises(ValueError, match="task_loader"):
        brainrdl.fit(_student(), None, progress=False)


# ------------------------------------------------------------------ one calling convention


def test_a_loss_is_called_by_what_it_declares_it_consumes():
    ids = list(range(10))
    teacher = BrainTeacher(_rdms(10, 0, ids))
    received = []

    class MyRDMLoss:  # no .comparison / .distance, a signature inspect cannot read
        consumes = "rdm"

        def __call__(self, *args):
            received.append(tuple(a.shape for a in args))
            student, rdm, mask = args
            s = torch.cdist(student, student)
            return ((s - rdm) ** 2 * mask).mean()

    brainrdl.fit(_student(), _task(32), teacher=teacher,
                 alignment={"1": ("IT", 1.0, MyRDMLoss())},
                 brain_loader=BrainBatches(torch.randn(10, 5), ids, batch_size=5),
                 progress=False)  # fmt: skip
    assert received == [((5, 16), (5, 5), (5, 5))] * 2

    class Undeclared(nn.Module):
        def forward(self, a, b):
            return (a - b).sum()

    with pytest.raises(TypeError, match=r"alignment\['1'\].*consumes"):
        brainrdl.fit(_student(), _task(32), teacher=teacher,
                     alignment={"1": ("IT", 1.0, Undeclared())}, progress=False)  # fmt: skip


def test_plot_log_lives_in_analysis():
    import brainrdl.train.loop as loop
    from brainrdl.analysis.plot import plot_log

    assert not hasattr(loop, "plot_log")
    import pandas as pd

    fig = plot_log(pd.DataFrame({"epoch": [0, 1], "task_loss": [1.0, 0.5],
                                 "heldout_rsa/IT/fc": [0.1, 0.2]}))  # fmt: skip
    assert fig.axes[2].get_lines() and fig.axes[0].get_ylabel()

