"""A small, fully random ``fit`` run for the resume tests (imported, or run as a script).

Every source of randomness a real run has is present: dropout (global torch RNG), a shuffling
task DataLoader with its own ``generator``, brain batches from either a seeded stimulus sampler
with a random augmentation (global RNG) or a user DataLoader shuffled from the global RNG, and
NumPy / Python draws inside the dataset. ``python _fit_resume_worker.py OUT VARIANT [resume]``
trains with a checkpoint every step in ``OUT`` and writes the final weights to ``OUT/final.pt``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import rsatoolbox
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from brainrdl.train.brain_batches import BrainBatches
from brainrdl.train.loop import fit
from brainrdl.train.teachers import BrainTeacher, NetworkTeacher

N_BRAIN = 10
EPOCHS = 3


class Killed(Exception):
    """Stands in for a SIGKILL in the in-process tests."""


class TaskData(Dataset):
    """Noisy task items; ``kill_at`` raises :class:`Killed` at that item fetch; ``delay`` slows."""

    def __init__(self, kill_at: int | None = None, delay: float = 0.0) -> None:
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
        self.kill_at, self.delay, self.fetched = kill_at, delay, 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        self.fetched += 1
        if self.kill_at is not None and self.fetched >= self.kill_at:
            raise Killed(f"killed at item fetch {self.fetched}")
        if self.delay:
            time.sleep(self.delay)
        # draws from the global NumPy and Python RNGs, as user datasets do
        jitter = float(np.random.normal(0, 0.01)) + random.uniform(-0.01, 0.01)  # noqa: NPY002
        return self.x[i] + jitter, self.y[i]


class BrainData(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i] + 0.01 * torch.randn(self.images.shape[1]), i  # id = position


def _augment(image: torch.Tensor) -> torch.Tensor:
    return image + 0.05 * torch.randn_like(image)


def setup(variant: str, *, kill_at: int | None = None, delay: float = 0.0, seed: int = 0):
    """(model, fit keyword arguments) of a run; ``seed`` seeds the loaders' generators."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 3))
    data = TaskData(kill_at, delay)
    loader = DataLoader(data, batch_size=8, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    kw: dict = {"task_loader": loader, "epochs": EPOCHS, "lr": 0.01, "progress": False}
    rng = np.random.default_rng(2)
    images = torch.as_tensor(rng.standard_normal((N_BRAIN, 6)), dtype=torch.float32)
    rdms = rsatoolbox.rdm.RDMs(rng.random((1, N_BRAIN * (N_BRAIN - 1) // 2)),
                               rdm_descriptors={"roi": ["IT"]},
                               pattern_descriptors={"stimulus": list(range(N_BRAIN))})  # fmt: skip
    if variant == "brain_tuple":
        kw.update(teacher=BrainTeacher(rdms), alignment={"1": "IT"},
                  brain_loader=BrainBatches(images, list(range(N_BRAIN)), batch_size=5,
                                            mix_ratio=0.5, transform=_augment, seed=3))  # fmt: skip
    elif variant == "brain_loader":
        brain = DataLoader(BrainData(images), batch_size=4, shuffle=True)  # global RNG
        kw.update(teacher=BrainTeacher(rdms), alignment={"1": "IT"},
                  brain_loader=BrainBatches(brain, mix_ratio=1.5))  # fmt: skip
    elif variant == "network":
        torch.manual_seed(5)
        teacher_net = nn.Sequential(nn.Linear(6, 9), nn.Tanh())
        kw.update(teacher=NetworkTeacher(teacher_net, ["1"]), alignment={"1": ("1", 0.5)})
    elif variant != "task":
        raise ValueError(variant)
    return model, kw


def scramble() -> None:
    """Put every global RNG somewhere else, as a fresh process would start."""
    torch.manual_seed(12345)
    np.random.seed(12345)  # noqa: NPY002
    random.seed(12345)


def main(out: str, variant: str, resume: bool) -> None:
    torch.set_num_threads(1)
    scramble()  # a reproducible script seeds every global RNG first (this run's NumPy draws)
    model, kw = setup(variant, delay=0.003)
    fit(model, checkpoint_dir=out, checkpoint_every=1, resume=resume, **kw)
    torch.save(model.state_dict(), Path(out) / "final.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "resume")
