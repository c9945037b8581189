"""Global-batch RDMs under ``torch.distributed`` (DDP, ``torchrun``): all_gather with gradients.

With data parallelism each process holds B/W items, but an RDM must span the whole batch so that
the loss does not depend on the number of processes. :func:`all_gather_with_grad` concatenates
every process's features; its backward sums the gradient of each process's (identical) global
loss and keeps the local slice. DDP then averages parameter gradients over the W processes, so
the W-fold sum and the 1/W average cancel: the gradient equals the single-process gradient of the
loss on the concatenated batch. Uneven last batches are padded for the collective and trimmed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process.

    Examples
    --------
    >>> is_distributed()
    False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed).

    Examples
    --------
    >>> rank()
    0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _padded_all_gather(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate ``x`` of all processes along dim 0, given every process's length ``sizes``.

    ``all_gather`` needs equal shapes, so each process pads to the longest and the padding is
    trimmed after the collective.
    """
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return _padded_all_gather(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # every process computed the same global loss: sum their gradients, keep our slice
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B_r, ...) of all processes along dim 0, differentiably.

    Outside a multi-process group it returns ``x`` unchanged. Batch sizes may differ per process.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(3, 2)
    >>> all_gather_with_grad(x) is x
    True
    """
    if not is_distributed():
        return x
    sizes = _sizes(x.shape[0], x.device)
    return _AllGather.apply(x, sizes)


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of all processes along dim 0 (no autograd; ids, teacher features).

    Examples
    --------
    >>> import torch
    >>> all_gather_nograd(torch.arange(3)).tolist()
    [0, 1, 2]
    """
    if not is_distributed():
        return x
    return _padded_all_gather(x, _sizes(x.shape[0], x.device))


def global_batch_rdm(features: torch.Tensor, method: str = "euclidean") -> torch.Tensor:
    """RDM (B_global, B_global) of the features of every process, differentiable in the local ones.

    Examples
    --------
    >>> import torch
    >>> global_batch_rdm(torch.eye(3)).shape
    torch.Size([3, 3])
    """
    from brainrdl.rsa.distances import pairwise_rdm

    flat = features.reshape(features.shape[0], -1)
    return pairwise_rdm(all_gather_with_grad(flat), method)
