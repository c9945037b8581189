"""Brain-stimulus batches: a sampler of distinct stimuli and an endless, seeded batch stream.

Brain stimulus sets are small (50-1,000 images) while task data is large, so training draws brain
batches from an endless stream that reshuffles the stimulus set each pass. Each batch holds
distinct stimuli: a repeated stimulus would add zero-distance pairs that carry no information.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from brainrdl.validation import check_scalar


class StimulusBatchSampler(Sampler[list[int]]):
    """Batches of distinct stimulus indices: a seeded permutation cut into chunks, per pass.

    Parameters
    ----------
    n_stimuli
        Size of the stimulus set.
    batch_size
        Stimuli per batch (at most ``n_stimuli``). A sub-RDM of B stimuli has B(B−1)/2 pairs;
        32-128 keeps it informative at the cost of one B×B Gram product.
    seed
        Seed of the permutations; pass ``epoch`` to :meth:`set_epoch` for a new order each pass.
    drop_last
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
    """Images with their stimulus ids (and optional labels) as a map-style dataset.

    Items are ``(image, index)``: the integer position in ``stimulus_ids``, so that batches
    collate into a LongTensor; :attr:`stimulus_ids` maps positions back to ids.

    Examples
    --------
    >>> import torch
    >>> s = StimulusSet(torch.zeros(3, 1, 8, 8), ["a", "b", "c"])
    >>> s[2][1], s.stimulus_ids[2]
    (2, 'c')
    """

    def __init__(self, images: Any, stimulus_ids: Sequence[Any]) -> None:
        images = torch.as_tensor(images)
        if not torch.is_floating_point(images):
            images = images.float()
        if len(stimulus_ids) != images.shape[0]:
            raise ValueError(
                f"stimulus_ids has {len(stimulus_ids)} ids but images has {images.shape[0]} items"
            )
        self.images, self.stimulus_ids = images, list(stimulus_ids)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], i


def brain_loader(
    images: Any, stimulus_ids: Sequence[Any], *, batch_size: int = 64, seed: int = 0
) -> DataLoader:
    """A DataLoader of ``(images, positions)`` batches of distinct stimuli.

    ``batch_size`` is capped at the size of the set; positions index
    ``loader.dataset.stimulus_ids``.

    Examples
    --------
    >>> import torch
    >>> loader = brain_loader(torch.zeros(10, 1, 8, 8), list(range(10)), batch_size=5)
    >>> x, pos = next(iter(loader)); tuple(x.shape), len(set(pos.tolist()))
    ((5, 1, 8, 8), 5)
    """
    dataset = StimulusSet(images, stimulus_ids)
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
