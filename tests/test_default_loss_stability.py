"""``RDLLoss()`` trains stably on the embedded demo: Adam at weights 0.1-100, SGD at 0.1-1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import brainrdl
from brainrdl.nets.models import DigitCNN


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from data_adapters import demo, fmri

    study = demo.make_demo_study(tmp_path_factory.mktemp("demo"), n_stimuli=40, n_runs=3,
                                 with_bold=False, with_nwb=False)
    rdms = fmri.rdms_from_betas(study.betas[0], study.design[0], atlas=study.atlas,
                                labels=study.atlas_labels, method="crossnobis")
    task = demo.load_task_digits(exclude_ids=study.stimulus_ids)
    n = 768
    x = torch.as_tensor(task.images[:n])
    y = torch.as_tensor(task.labels[:n])
    images = torch.as_tensor(study.images)
    return brainrdl.BrainTeacher(rdms["IT"]), images, study.stimulus_ids, x, y


# SGD's step scales with lr x weight: at lr 0.05 (momentum 0.9) a weight of 10 made the aligned
# ReLU layer die within 3 epochs (all units silent, task at chance), so SGD is checked at 0.1-1;
# Adam normalises the step and is checked up to 100 (see docs/losses.md).
WEIGHTS = {"adam": (0.1, 1.0, 10.0, 100.0), "sgd": (0.1, 1.0)}


def _fc1_norm(model, images) -> float:
    with torch.no_grad(), brainrdl.LayerTaps(model, ["fc1"], detach=True) as taps:
        model(images)
        return float(taps.activations["fc1"].norm(dim=1).mean())


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_default_rdl_is_stable_for_weights_from_0_1_to_100(demo, optimizer):
    teacher, images, ids, x, y = demo
    for weight in WEIGHTS[optimizer]:
        torch.manual_seed(0)
        model = DigitCNN()
        norm0 = _fc1_norm(model, images)
        opt = (torch.optim.Adam(model.parameters(), lr=2e-3) if optimizer == "adam"
               else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        log = brainrdl.fit(model, loader, teacher=teacher, alignment={"fc1": ("IT", weight)},
                           loss=brainrdl.RDLLoss(),
                           brain_loader=brainrdl.BrainBatches(images, ids, batch_size=40),
                           optimizer=opt, epochs=3, progress=False)
        align = log["align/fc1"].to_numpy()
        acc = log["task_accuracy"].to_numpy()
        ratio = _fc1_norm(model, images) / norm0
        # 1 - Pearson r is bounded by 2 and stays finite; what could still run away is the
        # student's scale: the aligned layer's activation norm stays within 100x of its start
        assert np.isfinite(align).all() and (align <= 2.0).all(), (weight, align)
        assert 1e-2 < ratio < 1e2, (weight, ratio)
        # alignment is learned at every weight (the term ends below where it started) ...
        assert align[-1] < align[0] or weight < 1.0, (weight, align)
        # ... and the task still learns (10 digit classes, chance 0.1) up to weight 1; at 10 and
        # 100 (Adam) it is slower, not broken: accuracy still rises above chance
        assert acc[-1] > (0.5 if weight <= 1.0 else 0.15), (weight, acc)
