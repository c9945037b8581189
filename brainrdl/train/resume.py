"""What a checkpoint must hold to continue a run bit for bit: every RNG and every stream position.

A run draws randomness from the global torch (and CUDA) generator, NumPy's and Python's global
generators, and from generators a ``DataLoader`` holds (``generator=``, its sampler's). A data
stream's order is fixed when its iterator is created (a shuffling sampler draws its permutation
then). :class:`BatchStream` therefore remembers the RNG state at the creation of its current
pass and how many batches it has handed out; a resumed run restores that state, recreates the
iterator, skips the batches already used, and then restores the state of the moment the
checkpoint was written. Everything is stored as tensors and plain Python values, so checkpoints
load with ``torch.load(weights_only=True)``.

Examples
--------
>>> import torch
>>> stream = BatchStream([torch.tensor([1]), torch.tensor([2]), torch.tensor([3])])
>>> first = stream.next(); saved = stream.state_dict()
>>> again = BatchStream([torch.tensor([1]), torch.tensor([2]), torch.tensor([3])])
>>> again.load_state_dict(saved); int(again.next())
2
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["BatchStream", "capture_rng", "loader_generators", "restore_rng"]


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects a DataLoader (and its samplers) draw from, in a fixed order.

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> g = torch.Generator().manual_seed(0)
    >>> len(loader_generators(DataLoader(range(4), shuffle=True, generator=g)))
    1
    """
    found: list[torch.Generator] = []
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(loader, "batch_sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator",
                None),
    ]  # fmt: skip
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def capture_rng(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    """The state of every global RNG and of ``generators`` (tensors and plain values).

    Examples
    --------
    >>> state = capture_rng(); a = torch.rand(1)
    >>> restore_rng(state); bool(torch.rand(1) == a)
    True
    """
    # the legacy global NumPy RNG is what user code draws from (np.random.rand): save it
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
        "generators": [g.get_state() for g in generators],
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    """Put every global RNG (and ``generators``, in the captured order) back to ``state``."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(
            f"the checkpoint holds {len(saved)} DataLoader generator states but the loaders "
            f"given now hold {len(generators)}; resume with the loaders of the interrupted run"
        )
    for g, s in zip(generators, saved):
        g.set_state(s.cpu())


class BatchStream:
    """Batches of a loader, pass after pass, that can be saved mid-pass and resumed exactly.

    Parameters
    ----------
    loader : Iterable[Any]
        Any re-iterable of batches (a DataLoader, a list).
    endless : bool
        Start a new pass when one ends (brain batches); otherwise :meth:`next` raises
        StopIteration at the end of the pass (task batches: one pass per epoch).
    name : str
        Used in error messages.

    Attributes
    ----------
    passes : int
        Passes started so far (a sampler's ``set_epoch`` receives the pass index).
    position : int
        Batches handed out in the current pass.
    """

    def __init__(self, loader: Iterable[Any], *, endless: bool = False, name: str = "loader"):
        self.loader, self.endless, self.name = loader, endless, name
        self.generators = loader_generators(loader)
        self.passes, self.position = 0, 0
        self._iter: Iterator[Any] | None = None
        self._start: dict[str, Any] | None = None

    def _begin(self) -> None:
        sampler = getattr(self.loader, "batch_sampler", None) or getattr(
            self.loader, "sampler", None
        )
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.passes)
        # the state the pass's order is drawn from: what a resumed run must start the pass with
        self._start = capture_rng(self.generators)
        self._iter = iter(self.loader)
        self.position = 0

    def start_pass(self) -> None:
        """Begin a new pass now (a task epoch), even if the previous one was not used up."""
        self._begin()
        self.passes += 1

    def next(self) -> Any:
        """The next batch; an endless stream wraps around, a finite one raises StopIteration."""
        if self._iter is None:
            self.start_pass()
        try:
            batch = next(self._iter)
        except StopIteration:
            if not self.endless:
                self._iter = None
                raise
            if self.position == 0:
                raise ValueError(f"{self.name} yielded no batches") from None
            self.start_pass()
            try:
                batch = next(self._iter)
            except StopIteration:
                raise ValueError(f"{self.name} yielded no batches") from None
        self.position += 1
        return batch

    @property
    def active(self) -> bool:
        """True while a pass is under way."""
        return self._iter is not None

    def end_pass(self) -> None:
        """Forget the current pass (a task epoch that ended early, e.g. ``max_steps``)."""
        self._iter = None

    def state_dict(self) -> dict[str, Any]:
        return {"passes": self.passes, "position": self.position, "active": self.active,
                "start": self._start}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Recreate the pass of ``state`` and skip the batches it had handed out.

        Leaves the global RNGs (and the loader's generators) wherever the skipping left them:
        restore the checkpoint's own RNG state afterwards.
        """
        self.passes = int(state["passes"])
        self._iter, self.position = None, 0
        if not state["active"]:
            return
        sampler = getattr(self.loader, "batch_sampler", None) or getattr(
            self.loader, "sampler", None
        )
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.passes - 1)
        self._start = state["start"]
        restore_rng(self._start, self.generators)
        self._iter = iter(self.loader)
        for _ in range(int(state["position"])):
            try:
                next(self._iter)
            except StopIteration:
                raise ValueError(
                    f"{self.name} now yields fewer batches than when the checkpoint was written "
                    f"({state['position']} were used); resume with the same data"
                ) from None
            self.position += 1
