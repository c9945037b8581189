"""Separate BatchNorm running statistics for brain-stimulus batches.

Brain stimuli (a few hundred lab images) differ in image statistics from the task data; letting
them update the task's running means would shift the task network at evaluation time. The brain
batches therefore run with their own copies of every BatchNorm buffer; the affine weights are
shared (they are what the alignment should shape).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class SeparateBatchNormStats:
    """Hold a second set of BatchNorm buffers and swap it in with :meth:`brain_mode`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    >>> bn = SeparateBatchNormStats(net)
    >>> with bn.brain_mode():
    ...     _ = net(torch.randn(8, 2) + 5)
    >>> net[1].running_mean.abs().sum().item() == 0.0  # task statistics untouched
    True
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        self.brain_buffers: list[dict[str, torch.Tensor]] = [
            {k: getattr(m, k).detach().clone() for k in _BUFFERS if getattr(m, k, None) is not None}
            for m in self.modules
        ]

    @contextmanager
    def brain_mode(self) -> Iterator[None]:
        """Swap the brain buffers in for the duration of the block (then swap back)."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for module, store in zip(self.modules, self.brain_buffers):
            for key, other in store.items():
                current = getattr(module, key)
                with torch.no_grad():  # swap values in place: DDP and optimizers keep their refs
                    tmp = current.clone()
                    current.copy_(other)
                    other.copy_(tmp)

    def state_dict(self) -> list[dict[str, torch.Tensor]]:
        """The brain buffers (for checkpoints)."""
        return [{k: v.clone() for k, v in s.items()} for s in self.brain_buffers]

    def load_state_dict(self, state: list[dict[str, torch.Tensor]]) -> None:
        """Restore buffers saved by :meth:`state_dict`."""
        if len(state) != len(self.brain_buffers):
            raise ValueError(
                "checkpoint BatchNorm state does not match the model's BatchNorm layers"
            )
        for store, saved in zip(self.brain_buffers, state):
            for k in store:
                store[k].copy_(saved[k])
