"""Data parallelism for the config runner: task shards, shared brain batches, gradient averaging.

Under ``torchrun`` every process runs the same command. :func:`process_group` joins the group
(NCCL on GPUs, gloo on CPUs); the task sampler (:class:`torch.utils.data.DistributedSampler`,
wrapped by :class:`EpochLoader`) gives each process an interleaved shard of the same seeded
permutation, so the W local batches of a step form the single-process batch;
:class:`ShardedStimulusBatchSampler` gives each process its slice of a brain batch that every
process draws identically; :func:`average_gradients` (an optimizer step pre-hook) averages the
gradients. :class:`LRSchedule` sets the learning rate from the optimizer step, so a resumed run
continues the schedule.

Examples
--------
>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(1)); opt = torch.optim.SGD([p], lr=1.0)
>>> cfg = {"name": "step", "warmup_steps": 0, "min_lr": 0.0, "step_epochs": 1, "gamma": 0.5}
>>> _ = LRSchedule(opt, cfg, steps_per_epoch=2, total_steps=6, start_step=0)
>>> for _ in range(3):
...     p.grad = torch.zeros(1); opt.step()
>>> opt.param_groups[0]["lr"]
0.5
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from brainrdl.train.config import ConfigError

__all__ = [
    "EpochLoader",
    "LRSchedule",
    "ShardedStimulusBatchSampler",
    "average_gradients",
    "barrier",
    "process_group",
    "rank0_first",
]

class ShardedStimulusBatchSampler:
    """This process's slice of a brain batch that every process draws identically.

    Wraps a :class:`~brainrdl.train.brain_batches.StimulusBatchSampler` seeded the same on every
    rank; rank ``r`` of ``W`` yields items ``[r*B//W, (r+1)*B//W)`` of each global batch of B, so
    the all-gathered batch is the single-process one. With ``world_size=1`` it is the wrapped
    sampler.

    Examples
    --------
    >>> from brainrdl.train.brain_batches import StimulusBatchSampler
    >>> full = list(StimulusBatchSampler(10, 4, seed=0))
    >>> parts = [list(ShardedStimulusBatchSampler(StimulusBatchSampler(10, 4, seed=0), r, 2))
    ...          for r in range(2)]
    >>> [a + b for a, b in zip(*parts)] == full
    True
    """

    def __init__(self, sampler: Any, rank: int, world_size: int) -> None:
        if sampler.batch_size < world_size:
            raise ValueError(f"[training] brain_batch_size ({sampler.batch_size}) must be at "
                             f"least the number of processes ({world_size})")  # fmt: skip
        self.sampler, self.rank, self.world_size = sampler, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Pass ``epoch`` to the wrapped sampler (a new permutation each pass)."""
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            n = len(batch)
            lo, hi = self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size
            yield batch[lo:hi]

    def __len__(self) -> int:
        return len(self.sampler)


class EpochLoader:
    """A task DataLoader whose sampler gets ``set_epoch`` at each pass (``fit`` does not call it).

    ``start_epoch`` makes a resumed run continue the same sequence of permutations.
    """

    def __init__(self, loader: DataLoader, seed: int, start_epoch: int = 0) -> None:
        self.loader, self.seed, self.epoch = loader, seed, start_epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.loader.sampler.set_epoch(self.epoch)
        if self.loader.generator is not None:  # worker seeds: a function of (seed, epoch)
            self.loader.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        return iter(self.loader)


def average_gradients(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    """Step pre-hook: replace every gradient by its mean over the processes (one all-reduce per
    dtype and device)."""
    world = dist.get_world_size()
    groups: dict[tuple[Any, Any], list[torch.Tensor]] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


class LRSchedule:
    """Learning-rate schedule as a function of the optimizer step (warm-up, cosine or step).

    Set after every step by a step post-hook; a resumed run starts at ``start_step``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: dict[str, Any],
                 steps_per_epoch: int, total_steps: int, start_step: int) -> None:  # fmt: skip
        self.optimizer, self.cfg = optimizer, cfg
        self.steps_per_epoch, self.total = max(steps_per_epoch, 1), max(total_steps, 1)
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.step = start_step
        self._apply()
        optimizer.register_step_post_hook(self._hook)

    def factor(self, step: int, base: float) -> float:
        s = self.cfg
        warm = min(1.0, (step + 1) / s["warmup_steps"]) if s["warmup_steps"] else 1.0
        if s["name"] == "cosine":
            floor = min(s["min_lr"] / base, 1.0) if base > 0 else 0.0
            return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / self.total)))
        if s["name"] == "step":
            return warm * s["gamma"] ** (step // (s["step_epochs"] * self.steps_per_epoch))
        return warm

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * self.factor(self.step, base)

    def _hook(self, *_: Any) -> None:
        self.step += 1
        self._apply()


# ----------------------------------------------------------------------------- process group


@contextlib.contextmanager
def process_group(device_choice: str) -> Iterator[tuple[int, int, torch.device]]:
    """``(rank, world_size, device)``; starts the group from torchrun's environment if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(['device: "cuda" asked for, but torch sees no CUDA device'])
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    started = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        started = True
    try:
        if dist.is_initialized():
            yield dist.get_rank(), dist.get_world_size(), device
        else:
            yield 0, 1, device
    finally:
        if started:
            dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def rank0_first(rank: int, build: Callable[[], Any]) -> Any:
    """Run ``build`` on rank 0 first (it may write caches), then on the others."""
    if rank == 0:
        value = build()
        barrier()
        return value
    barrier()
    return build()
