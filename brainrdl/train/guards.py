"""Health checks of a training run: non-finite terms and runaway scale, each a named error.

A step's loss terms (task loss, each alignment term and its weighted value, each aligned layer's
activation scale) are collected as device tensors and brought to the host together, once per
step (:class:`StepValues`): one device synchronisation per step for every check and for the log,
instead of one per term. :class:`RunawayWatch` reads the same numbers: finite is not healthy, and
a run whose alignment term or activations grow by orders of magnitude while the task does not
improve is stopped with advice.

Examples
--------
>>> import torch
>>> values = StepValues()
>>> values.add("task_loss", torch.tensor(0.5))
>>> values.add("align/fc", torch.tensor(float("nan")), layer="fc")
>>> values.check(epoch=2, step=7)
Traceback (most recent call last):
...
brainrdl.train.guards.NonFiniteLossError: loss term 'align/fc' (layer 'fc') is nan at epoch 2, ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["NonFiniteLossError", "RunawayWatch", "StepValues", "TrainingDivergedError"]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the term, layer, epoch and step.

    Attributes ``term``, ``layer``, ``epoch`` and ``step`` hold the same (None when unknown).

    Examples
    --------
    >>> err = NonFiniteLossError("x", term="align/fc", layer="fc", epoch=0, step=3)
    >>> isinstance(err, FloatingPointError), err.layer, err.step
    (True, 'fc', 3)
    """

    def __init__(
        self,
        message: str,
        *,
        term: str | None = None,
        layer: str | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> None:
        super().__init__(message)
        self.term, self.layer, self.epoch, self.step = term, layer, epoch, step


class TrainingDivergedError(NonFiniteLossError):
    """Training ran away: a term or activation scale grew by orders of magnitude while the
    task did not improve (values may still be finite).

    Examples
    --------
    >>> issubclass(TrainingDivergedError, NonFiniteLossError)
    True
    """


_ADVICE = "lower the learning rate or the term's weight, or check the inputs"


class StepValues:
    """The scalar values of one step, checked and read back to the host in one transfer.

    ``add(key, value, weighted=None, layer=None)`` records a 0-d tensor (its detached value) and,
    for an alignment term, its weighted value (what enters the total: a huge weight can overflow
    it while the term is finite). :meth:`check` raises :class:`NonFiniteLossError` naming the
    first non-finite entry and returns ``{key: [sum, count]}`` of this step on the host.
    """

    def __init__(self) -> None:
        self._keys: list[tuple[str, str, str | None, float | None]] = []  # key, role, layer, w
        self._values: list[torch.Tensor] = []

    def add(
        self,
        key: str,
        value: torch.Tensor,
        weighted: torch.Tensor | None = None,
        *,
        layer: str | None = None,
        weight: float | None = None,
    ) -> None:
        self._keys.append((key, "value", layer, None))
        self._values.append(value.detach().float().reshape(()))
        if weighted is not None:
            self._keys.append((key, "weighted", layer, weight))
            self._values.append(weighted.detach().float().reshape(()))

    def add_stat(self, key: str, value: torch.Tensor) -> None:
        """A logged statistic that is not a loss term (counts, activation scales)."""
        self._keys.append((key, "stat", None, None))
        self._values.append(value.detach().float().reshape(()))

    def __bool__(self) -> bool:
        return bool(self._values)

    def check(self, epoch: int, step: int) -> dict[str, list[float]]:
        """Bring every value to the host (one sync); raise on the first non-finite loss term."""
        if not self._values:
            return {}
        host = torch.stack(self._values).tolist()
        out: dict[str, list[float]] = {}
        for (key, role, layer, weight), value in zip(self._keys, host):
            if role != "stat" and not math.isfinite(value):
                where = f" (layer {layer!r})" if layer is not None else ""
                what = (
                    f"loss term {key!r}{where} is finite but times its weight {weight:g} is "
                    f"{value}"
                    if role == "weighted"
                    else f"loss term {key!r}{where} is {value}"
                )
                advice = (
                    "lower the term's weight" if role == "weighted" else _ADVICE
                )
                raise NonFiniteLossError(
                    f"{what} at epoch {epoch}, step {step}; {advice}",
                    term=key, layer=layer, epoch=epoch, step=step,
                )  # fmt: skip
            if role == "weighted":
                continue
            entry = out.setdefault(key, [0.0, 0])
            entry[0] += value
            entry[1] += 1
        return out


class RunawayWatch:
    """Stops a run whose scale runs away: a ``factor``-fold growth over the first steps.

    The reference of each alignment term (``align/<layer>``) and activation scale
    (``act_rms/<layer>``) is its mean over the first ``window`` aligned steps; after that, each
    window's mean is compared with it. A growth by ``factor`` or more while the task loss has not
    improved on its own reference (or with no task loss at all) raises
    :class:`TrainingDivergedError`. A run whose task improves is never stopped by it.

    Parameters
    ----------
    factor : float | None
        Growth that counts as runaway (default 1e3); None switches the watch off.
    window : int
        Steps per reference and per comparison window.

    Examples
    --------
    >>> watch = RunawayWatch(factor=1e3, window=2)
    >>> for step, scale in enumerate([1.0, 1.0, 10.0, 10.0, 5e3, 5e3]):
    ...     watch.update({"task_loss": [1.0, 1], "align/fc": [scale, 1]}, epoch=0, step=step)
    Traceback (most recent call last):
    ...
    brainrdl.train.guards.TrainingDivergedError: training ran away at epoch 0, step 5: ...
    """

    def __init__(self, factor: float | None = 1e3, window: int = 10) -> None:
        if factor is not None and not factor > 1:
            raise ValueError(f"runaway must be a factor > 1 or None; got {factor!r}")
        self.factor, self.window = factor, int(window)
        self.reference: dict[str, float] = {}
        self._sums: dict[str, list[float]] = {}
        self._steps = 0

    def update(self, values: Mapping[str, list[float]], epoch: int, step: int) -> None:
        """Add one step's host values (from :meth:`StepValues.check`)."""
        if self.factor is None or not any(k.startswith("align/") for k in values):
            return
        for key, (total, count) in values.items():
            if key == "task_loss" or key.startswith(("align/", "act_rms/")):
                entry = self._sums.setdefault(key, [0.0, 0])
                entry[0] += total
                entry[1] += count
        self._steps += 1
        if self._steps < self.window:
            return
        means = {k: s / c for k, (s, c) in self._sums.items() if c}
        self._sums, self._steps = {}, 0
        if not self.reference:
            self.reference = means
            return
        self._judge(means, epoch, step)

    def _judge(self, means: dict[str, float], epoch: int, step: int) -> None:
        task_ref, task_now = self.reference.get("task_loss"), means.get("task_loss")
        task_improved = task_ref is not None and task_now is not None and task_now < task_ref
        if task_improved:
            return
        for key, now in means.items():
            ref = self.reference.get(key)
            if key == "task_loss" or ref is None or not ref > 0:
                continue
            if now >= self.factor * ref:
                what = "activation scale (RMS)" if key.startswith("act_rms/") else "term"
                task = (
                    f"while the task loss went from {task_ref:.4g} to {task_now:.4g}"
                    if task_ref is not None and task_now is not None
                    else "with no task loss to hold it"
                )
                raise TrainingDivergedError(
                    f"training ran away at epoch {epoch}, step {step}: {what} {key!r} grew "
                    f"{now / ref:.3g}-fold (from {ref:.4g} over the first {self.window} aligned "
                    f"steps to {now:.4g}) {task}. Try a scale-free, stable RDL comparison "
                    "(RDLLoss(comparison='pearson'); the paper form rescales the teacher to the "
                    "student's own scale, which can grow without bound under Adam), a lower "
                    "alignment weight, or a lower learning rate",
                    term=key, layer=key.partition("/")[2], epoch=epoch, step=step,
                )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"reference": dict(self.reference), "sums": dict(self._sums), "steps": self._steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reference = dict(state["reference"])
        self._sums = {k: list(v) for k, v in state["sums"].items()}
        self._steps = int(state["steps"])
