"""Brain-stimulus batches: a sampler of distinct stimuli and an endless, seeded batch stream.

Brain stimulus sets are small (50-1,000 images) while task data is large, so training draws brain
batches from an endless stream that reshuffles the stimulus set each pass. Each batch holds
distinct stimuli: a repeated stimulus would add zero-distance pairs that carry no information.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from brainrdl.validation import check_scalar


class StimulusBatchSampler(Sampler[list[int]]):
    """Batches of distinct stimulus indices: a seeded permutation cut into chunks, per pass.

    Parameters
    ----------
    n_stimuli : int
        Size of the stimulus set.
    batch_size : int
        Stimuli per batch (at most ``n_stimuli``). A sub-RDM of B stimuli has B(B−1)/2 pairs;
        32-128 keeps it informative at the cost of one B×B Gram product.
    seed : int
        Seed of the permutations; pass ``epoch`` to :meth:`set_epoch` for a new order each pass.
    drop_last : bool
        Drop a final batch smaller than ``batch_size`` (default True: every sub-RDM is full size).

    Examples
    --------
    >>> batches = list(StimulusBatchSampler(10, 4, seed=0))
    >>> [len(b) for b in batches], len({i for b in batches for i in b})
    ([4, 4], 8)
    """

    def __init__(
        self, n_stimuli: int, batch_size: int, *, seed: int = 0, drop_last: bool = True
    ) -> None:
        n_stimuli = check_scalar("n_stimuli", n_stimuli, int, min_val=2)
        batch_size = check_scalar("batch_size", batch_size, int, min_val=2, max_val=n_stimuli)
        self.n_stimuli, self.batch_size = n_stimuli, batch_size
        self.seed, self.drop_last, self.epoch = int(seed), bool(drop_last), 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of pass ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n_stimuli, generator=gen).tolist()
        stop = len(self) * self.batch_size
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        full, rest = divmod(self.n_stimuli, self.batch_size)
        return full if self.drop_last or rest < 2 else full + 1


class StimulusSet(Dataset):
    """Images with their stimulus ids as a map-style dataset, optionally augmented.

    Items are ``(image, index)``: the integer position in ``stimulus_ids``, so that batches
    collate into a LongTensor; :attr:`stimulus_ids` maps positions back to ids. Ids must be
    distinct: a repeated stimulus would pair with itself at distance zero. ``transform`` (any
    callable on one image, e.g. a torchvision transform) is applied each time an item is read,
    so every pass sees a new augmentation of the brain stimuli (drawn from the global torch RNG).

    Examples
    --------
    >>> import torch
    >>> s = StimulusSet(torch.zeros(3, 1, 8, 8), ["a", "b", "c"])
    >>> s[2][1], s.stimulus_ids[2]
    (2, 'c')
    """

    def __init__(
        self,
        images: Any,
        stimulus_ids: Sequence[Any],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        images = torch.as_tensor(images)
        if not torch.is_floating_point(images):
            images = images.float()
        if len(stimulus_ids) != images.shape[0]:
            raise ValueError(
                f"stimulus_ids has {len(stimulus_ids)} ids but images has {images.shape[0]} items"
            )
        ids = [i.item() if hasattr(i, "item") else i for i in stimulus_ids]
        seen: set[Any] = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]
        if repeated:
            raise ValueError(
                f"stimulus_ids: {len(repeated)} repeated brain-stimulus ids (e.g. {repeated[0]!r});"
                " each stimulus must appear once (average repeated presentations into one RDM "
                "condition first)"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable; got {type(transform).__name__}")
        self.images, self.stimulus_ids, self.transform = images, list(stimulus_ids), transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        return (self.transform(image) if self.transform is not None else image), i


def brain_loader(
    images: Any,
    stimulus_ids: Sequence[Any],
    *,
    batch_size: int = 64,
    seed: int = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> DataLoader:
    """A DataLoader of ``(images, positions)`` batches of distinct stimuli.

    ``batch_size`` is capped at the size of the set; positions index
    ``loader.dataset.stimulus_ids``; ``transform`` augments each image as it is read.

    Examples
    --------
    >>> import torch
    >>> loader = brain_loader(torch.zeros(10, 1, 8, 8), list(range(10)), batch_size=5)
    >>> x, pos = next(iter(loader)); tuple(x.shape), len(set(pos.tolist()))
    ((5, 1, 8, 8), 5)
    """
    dataset = StimulusSet(images, stimulus_ids, transform)
    sampler = StimulusBatchSampler(len(dataset), min(batch_size, len(dataset)), seed=seed)
    return DataLoader(dataset, batch_sampler=sampler)


def endless(loader: Any) -> Iterator[Any]:
    """Cycle through ``loader`` forever, calling ``set_epoch`` on its sampler each pass.

    Examples
    --------
    >>> it = endless([1, 2]); [next(it) for _ in range(5)]
    [1, 2, 1, 2, 1]
    """
    epoch = 0
    while True:
        sampler = getattr(loader, "batch_sampler", None) or getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("brain_loader yielded no batches")
        epoch += 1


@dataclass
class BrainBatches:
    """Brain-stimulus batches for :func:`brainrdl.fit` and how they mix with task batches.

    Parameters
    ----------
    images
        The brain stimuli (N, ...) as a tensor, with ``stimulus_ids``; or a DataLoader of
        ``(images, stimulus_ids_or_positions)`` batches (then ``stimulus_ids`` is None and
        ``batch_size``, ``transform`` and ``seed`` are the loader's business).
    stimulus_ids
        One id per image (distinct), as the teacher's RDMs list them.
    batch_size
        Distinct stimuli per brain batch (capped at N).
    mix_ratio
        Brain batches per task batch (0.5: one every second step; 2: two per step), their
        gradients added to the task step's.
    steps_per_epoch
        Without a task loader (RDL-only training): optimiser steps per epoch, one brain batch
        each (default: one pass over the stimuli).
    transform
        Augmentation applied to each brain image every time it is drawn (e.g. a torchvision
        transform); the target RDM stays the stimulus's.
    separate_bn
        Brain batches use their own BatchNorm running statistics.
    seed
        Seed of the brain-batch order (each pass is a new seeded permutation).

    Examples
    --------
    >>> import torch
    >>> b = BrainBatches(torch.zeros(10, 3), list(range(10)), batch_size=4, mix_ratio=0.5)
    >>> x, pos = next(iter(b.loader())); tuple(x.shape)
    (4, 3)
    """

    images: Any
    stimulus_ids: Sequence[Any] | None = None
    batch_size: int = 64
    mix_ratio: float = 1.0
    steps_per_epoch: int | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    separate_bn: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.mix_ratio >= 0:
            raise ValueError(f"mix_ratio must be >= 0; got {self.mix_ratio!r}")
        if self.steps_per_epoch is not None and (
            not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1
        ):
            raise ValueError(
                f"steps_per_epoch must be a positive int or None; got {self.steps_per_epoch!r}"
            )
        if self.stimulus_ids is None and isinstance(self.images, torch.Tensor):
            raise ValueError("BrainBatches(images, stimulus_ids): images need their stimulus ids")
        if self.stimulus_ids is None and self.transform is not None:
            raise ValueError(
                "BrainBatches(loader, transform=...): a DataLoader applies its own transforms; "
                "give images and stimulus_ids to have BrainBatches augment them"
            )

    @classmethod
    def coerce(cls, value: Any) -> BrainBatches:
        """A BrainBatches from what ``fit(brain_loader=...)`` accepts: itself, a tuple, a loader."""
        if isinstance(value, cls):
            return value
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(
                    "brain_loader as a tuple must be (images, stimulus_ids); got "
                    f"{len(value)} items"
                )
            return cls(value[0], value[1])
        return cls(value)

    def loader(self) -> Any:
        """The DataLoader of brain batches (built once from images and ids)."""
        if self.stimulus_ids is None:
            return self.images
        if not hasattr(self, "_loader"):
            self._loader = brain_loader(
                self.images, self.stimulus_ids, batch_size=self.batch_size, seed=self.seed,
                transform=self.transform,
            )  # fmt: skip
        return self._loader

    def stimulus_id_list(self) -> list[Any] | None:
        """Ids by position (positions from the loader map to them), or None (ids as given)."""
        return getattr(getattr(self.loader(), "dataset", None), "stimulus_ids", None)
