"""Data sources of ``brainrdl train`` that read lab formats or the embedded demo.

They live in the CLI because they call ``data_adapters`` (the training room never does); the
runner (:mod:`brainrdl.runs.runner`) looks them up by name: ``"teacher:demo"``,
``"teacher:betas"``, ``"data:demo"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from brainrdl.runs.runner import BrainData, RunContext, TaskData, load_stimuli, split_targets


def demo_brain(ctx: RunContext) -> BrainData:
    """The embedded demo study (written under ``<out>/demo_data``): crossnobis RDMs per region
    from its NIfTI betas and atlas, and its digit stimuli."""
    from data_adapters.demo import make_demo_study
    from data_adapters.fmri import rdms_from_betas

    t = ctx.cfg["teacher"]
    study = make_demo_study(ctx.out / "demo_data", seed=ctx.cfg["seed"], n_stimuli=t["n_stimuli"],
                            n_runs=6, with_bold=False, with_nwb=False)  # fmt: skip
    rdms = rdms_from_betas(study.betas[0], study.design[0], atlas=study.atlas,
                           labels=study.atlas_labels, method=t["method"])  # fmt: skip
    images = torch.as_tensor(study.images, dtype=torch.float32)
    return BrainData(dict(rdms), images, list(study.stimulus_ids))


def betas_brain(ctx: RunContext) -> BrainData:
    """RDMs per atlas region from NIfTI betas (``data_adapters.fmri.rdms_from_betas``) and the
    stimuli from ``[teacher] stimuli``."""
    from data_adapters.fmri import rdms_from_betas

    t = ctx.cfg["teacher"]
    rdms = rdms_from_betas(t["betas"], t["design"], atlas=t["atlas"],
                           labels=t["atlas_labels"] or None, method=t["method"])  # fmt: skip
    images, ids = load_stimuli(t["stimuli"], ctx.cfg["data"]["image_size"], ctx.transform)
    return BrainData(split_targets(rdms, t["target_descriptor"]), images, ids)


def demo_task(ctx: RunContext) -> TaskData:
    """The scikit-learn digits that are not demo-study stimuli, split into train / validation."""
    from brainrdl.runs.runner import split_task
    from data_adapters.demo import load_task_digits

    exclude = list(ctx.brain.stimulus_ids) if ctx.brain is not None else None
    if ctx.brain is not None and not all(str(s).startswith("digit_") for s in exclude):
        exclude = None  # brain stimuli are not demo digits: exclude the default demo set
    task = load_task_digits(exclude_ids=exclude, n_stimuli=ctx.cfg["teacher"]["n_stimuli"],
                            seed=ctx.cfg["seed"])  # fmt: skip
    ds = TensorDataset(torch.as_tensor(task.images, dtype=torch.float32),
                       torch.as_tensor(task.labels))  # fmt: skip
    return split_task(ds, ctx.cfg)


#: name -> source, passed to :func:`brainrdl.runs.runner.run_training`
SOURCES: dict[str, Any] = {
    "teacher:demo": demo_brain,
    "teacher:betas": betas_brain,
    "data:demo": demo_task,
}
