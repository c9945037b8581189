"""Global-batch RDL under DDP (2 CPU processes, gloo) equals one process on the whole batch."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import rsatoolbox
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from brainrdl.nets.taps import LayerTaps
from brainrdl.train.distributed import all_gather_nograd, all_gather_with_grad, global_batch_rdm
from brainrdl.train.functional import rdl_loss
from brainrdl.train.teachers import BrainTeacher
from brainrdl.train.terms import global_targets


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 4, generator=g)
    t = torch.rand(10, 10, generator=g)
    return x, (t + t.T).fill_diagonal_(0)


def _loss(model, x, target):
    return rdl_loss(model[1](model[0](x)), target)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, target = _batch()
        local = x[5 * rank : 5 * rank + 5]
        model = nn.parallel.DistributedDataParallel(_model())
        inner = model.module
        taps = LayerTaps(model, ["1"])  # taps see through the DDP wrapper
        logits = model(local)
        glob = all_gather_with_grad(taps.activations["1"])
        # task term (mean over the local shard; DDP averages) + RDL over the global batch
        loss = logits.pow(2).mean() + rdl_loss(glob, target)
        loss.backward()
        sizes = [6, 4]  # uneven shards exercise the padding of the collectives
        start = sum(sizes[:rank])
        ids = all_gather_nograd(torch.arange(start, start + sizes[rank]))
        rdm = global_batch_rdm(x[start : start + sizes[rank]])
        # a brain target over the global batch: asked again with the gathered ids
        teacher = BrainTeacher(
            rsatoolbox.rdm.RDMs(target.double().numpy()[None], rdm_descriptors={"roi": ["IT"]})
        )
        shard, shard_ids = x[start : start + sizes[rank]], torch.arange(start, start + sizes[rank])
        brain = global_targets(teacher, shard, shard_ids, teacher.targets(shard, shard_ids))["IT"]
        loss = rdl_loss(glob, target)
        torch.save(
            {"loss": loss.detach(), "grads": [p.grad for p in inner.parameters()], "ids": ids,
             "rdm": rdm.detach(), "brain": brain.rdm, "brain_mask": brain.pair_mask},
            os.path.join(out, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gradients_equal_single_process():
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        results = [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(2)]
    x, target = _batch()
    model = _model()
    loss = _loss(model, x, target)
    (model(x).pow(2).mean() + loss).backward()
    from brainrdl.rsa.distances import pairwise_rdm

    for res in results:
        torch.testing.assert_close(res["loss"], loss.detach())
        assert res["ids"].tolist() == list(range(10))
        torch.testing.assert_close(res["rdm"], pairwise_rdm(x))
        torch.testing.assert_close(res["brain"], target)
        assert res["brain_mask"].sum() == 90
        # DDP averaged the gradients: each rank now holds the single-process gradient
        for g, p in zip(res["grads"], model.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


def test_single_process_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(x) is x
    torch.testing.assert_close(global_batch_rdm(x), ((x[:, None] - x[None]) ** 2).sum(-1) / 2)
