"""``brainrdl.fit``: ordinary task training plus alignment of chosen layers toward a teacher.

Task batches come from ``task_loader``; alignment batches either from the same batches (a network
teacher, distillation) or from a separate, small brain-stimulus set (``brain_loader``, see
:class:`~brainrdl.train.brain_batches.BrainBatches`) interleaved with the task batches, or alone
(RDL-only training). Each epoch logs task loss and accuracy, each alignment term, the RMS scale
of each aligned layer, the alignment batches skipped as too small, and, when asked, held-out RSA
(:class:`~brainrdl.train.monitor.Heldout`): a low alignment loss alone can be gamed.

Each step's values reach the host once (:class:`~brainrdl.train.guards.StepValues`): that one
transfer checks every term for NaN / inf and feeds the log and the runaway watch.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from brainrdl.errors import InvalidTypeError
from brainrdl.nets.taps import LayerTaps, unwrap_model
from brainrdl.train.batchnorm import SeparateBatchNormStats
from brainrdl.train.brain_batches import BrainBatches
from brainrdl.train.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from brainrdl.train.distributed import all_gather_with_grad, is_distributed, rank
from brainrdl.train.guards import (
    NonFiniteLossError,
    RunawayWatch,
    StepValues,
    TrainingDivergedError,
)
from brainrdl.train.monitor import Heldout, HeldoutMonitor, evaluate
from brainrdl.train.precision import Precision, refuse_outer_autocast
from brainrdl.train.resume import BatchStream, capture_rng, restore_rng
from brainrdl.train.terms import (
    AlignmentPair,
    alignment_value,
    global_targets,
    is_projection,
    parse_alignment,
)
from brainrdl.validation import check_device, check_output_dir, check_scalar

__all__ = [
    "Checkpointing",
    "NonFiniteLossError",
    "TrainingDivergedError",
    "evaluate",
    "fit",
]

#: fewest items an alignment batch needs: 3 pairs (a correlation over fewer is undefined)
MIN_ALIGN_ITEMS = 3
_CHECKPOINT_FORMAT = 2


def fit(
    model: nn.Module,
    task_loader: Iterable[Any] | None = None,
    *,
    teacher: Any = None,
    alignment: Mapping[str, Any] | None = None,
    loss: Callable[..., torch.Tensor] | None = None,
    brain_loader: Any = None,
    heldout: Any = None,
    val_loader: Iterable[Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    task_loss: Callable[..., torch.Tensor] | None = None,
    epochs: int = 1,
    warmup_epochs: int = 0,
    precision: str = "32",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    runaway: float | None = 1e3,
    device: str | torch.device | None = None,
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    taps: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Train ``model`` on its task while pulling tapped layers toward a teacher's RDMs.

    Parameters
    ----------
    model : nn.Module
        The student (may be DDP-wrapped; layer names are those of the inner model).
    task_loader : Iterable[Any] | None
        Yields ``(inputs, labels)``, ``(inputs, labels, stimulus_ids)``, a dict with ``"inputs"``
        (and optionally ``"labels"``, ``"stimulus_ids"``) or ``inputs`` alone (no task loss, e.g.
        pure distillation). None trains on brain batches alone (RDL-only, see below).
    teacher : Any
        A :class:`brainrdl.train.teachers.Teacher` (brain or network); None trains the task only.
    alignment : Mapping[str, Any] | None
        ``{student_layer: target}``, ``{student_layer: (target, weight)}`` or
        ``{student_layer: (target, weight, loss)}``. Each loss declares what it consumes
        (``consumes``; see :mod:`brainrdl.train.registry`). A
        :class:`brainrdl.train.losses.KnowledgeProjection` consumes conv maps: its student layer is
        tapped unreduced and a network teacher's maps are projected into it, e.g.
        ``{"1": ("1", 1.0, KnowledgeProjection(16, 8))}``; it is trained with the student.
    loss : Callable[..., torch.Tensor] | None
        Default alignment loss (``brainrdl.RDLLoss()``).
    brain_loader : Any
        Brain-stimulus batches: ``(images, stimulus_ids)``, a DataLoader of
        ``(images, stimulus_ids_or_positions)``, or a
        :class:`~brainrdl.train.brain_batches.BrainBatches` with the batch size, the mix with
        task batches (``mix_ratio``), steps per epoch, augmentation (``transform``), separate
        BatchNorm statistics and the seed. None: alignment runs on the task batches. Stimulus ids
        within a brain batch must be distinct.
    heldout : Any
        Stimuli never trained on, scored each epoch: ``(images, stimulus_ids)`` (against the
        training teacher, Pearson r: ``heldout_rsa/<layer>``) or a
        :class:`~brainrdl.train.monitor.Heldout` with separate held-out RDMs (which the training
        teacher need not cover), one or more targets (e.g. human and monkey IT), any
        :func:`brainrdl.compare` method and the layers to score.
    val_loader : Iterable[Any] | None
        Labelled batches for ``val_loss`` / ``val_accuracy`` per epoch.
    optimizer, lr
        Any optimizer; default Adam(lr) over the model's and the losses' parameters. A given
        optimizer must also hold the parameters of every KnowledgeProjection in ``alignment``.
    task_loss : Callable[..., torch.Tensor] | None
        Default ``nn.CrossEntropyLoss()``.
    epochs, warmup_epochs : int
        Epochs in all; the alignment terms start after ``warmup_epochs``.
    precision : str
        ``"32"``, ``"bf16"`` or ``"fp16"``: the forward pass runs under ``torch.autocast`` (fp16
        with a ``GradScaler``); RDMs and alignment losses are computed in float32. Calling fit
        inside an autocast block raises :class:`~brainrdl.train.precision.OuterAutocastError`.
    checkpoint_dir, checkpoint_every, resume
        Save ``checkpoint_dir/last.pt`` atomically after each epoch and, with
        ``checkpoint_every=N``, every N optimiser steps (a kill loses at most N steps).
        ``resume=True`` continues from it: on the same device and data, the final weights equal
        an uninterrupted run's exactly (every RNG, DataLoader generator and position inside the
        epoch is saved). Stale temporary files of a killed write are removed; an unreadable
        checkpoint raises :class:`~brainrdl.train.checkpoint.CheckpointError` naming its path.
    runaway : float | None
        Stop with :class:`TrainingDivergedError` when an alignment term or an aligned layer's
        activation scale grows this many times over its value in the first aligned steps while
        the task loss has not improved (see :class:`~brainrdl.train.guards.RunawayWatch`); None
        switches the watch off.
    device : str | torch.device | None
        Where to train (default: the model's device).
    progress : bool
        tqdm bars.
    max_steps_per_epoch : int | None
        Stop each epoch after this many steps (quick runs).
    taps : Mapping[str, Any] | None
        Options of :class:`brainrdl.nets.taps.LayerTaps` for the student's layers
        (``reduction``, ``projection_dim``, ``seed``); layers whose loss consumes maps default
        to ``reduction="none"``.

    Returns
    -------
    pandas.DataFrame
        One row per epoch: ``epoch``, ``task_loss``, ``task_accuracy``, ``align/<layer>``,
        ``act_rms/<layer>``, ``align_skipped`` (alignment batches of fewer than 3 items, left
        out of the alignment term), ``seconds``, and the validation / held-out columns.

    Raises
    ------
    NonFiniteLossError
        A term (task loss, alignment term or its weighted value) became NaN or infinite; the
        message names the term, the layer, the epoch and the step.
    TrainingDivergedError
        The runaway watch fired (see ``runaway``).

    Notes
    -----
    RDL-only training: leave out ``task_loader`` (or pass None) and give a ``brain_loader``;
    each step then draws one brain batch, e.g. ``fit(model, teacher=teacher,
    alignment={"fc": "IT"}, brain_loader=BrainBatches(images, ids, batch_size=32,
    steps_per_epoch=20))``. ``task_accuracy`` and ``task_loss`` are then NaN.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from brainrdl.train.teachers import NetworkTeacher
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    >>> loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    >>> student = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> teacher = NetworkTeacher(nn.Sequential(nn.Linear(10, 32), nn.ReLU()), ["1"])
    >>> log = fit(student, loader, teacher=teacher, alignment={"1": "1"}, epochs=2,
    ...           progress=False)
    >>> list(log.columns[:4])
    ['epoch', 'task_loss', 'task_accuracy', 'align/1']
    """
    run = _Run(
        model, task_loader, teacher=teacher, alignment=alignment, loss=loss,
        brain_loader=brain_loader, heldout=heldout, val_loader=val_loader, optimizer=optimizer,
        lr=lr, task_loss=task_loss, epochs=epochs, warmup_epochs=warmup_epochs,
        precision=precision,
        checkpointing=Checkpointing(checkpoint_dir, checkpoint_every, resume),
        runaway=runaway, device=device, progress=progress, max_steps=max_steps_per_epoch,
        tap_options=taps,
    )  # fmt: skip
    return run.run()


@dataclass
class Checkpointing:
    """Where and how often :func:`fit` saves, and whether it resumes.

    Examples
    --------
    >>> Checkpointing("runs/a", every=50).due(100), Checkpointing(None).path is None
    (True, True)
    """

    directory: str | Path | None = None
    every: int | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.every is not None:
            if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
                raise ValueError(
                    f"checkpoint_every must be a positive int (steps) or None; got {self.every!r}"
                )
            if self.directory is None:
                raise ValueError("checkpoint_every needs checkpoint_dir (where to save)")
        if self.directory is not None:  # an unwritable folder fails now, not after an epoch
            check_output_dir("checkpoint_dir", self.directory)
        if self.resume and self.directory is None:
            raise ValueError("resume=True needs checkpoint_dir (where the checkpoint is)")

    @property
    def path(self) -> Path | None:
        return Path(self.directory) / CHECKPOINT_NAME if self.directory is not None else None

    def due(self, global_step: int) -> bool:
        """True after a step at which a mid-epoch checkpoint is due."""
        return self.every is not None and global_step % self.every == 0

    def prepare(self) -> dict[str, Any] | None:
        """Remove stale temporaries; the saved state when resuming from an existing file."""
        if self.path is None:
            return None
        if rank() == 0:
            remove_stale_temporaries(self.path)
        if self.resume and self.path.is_file():
            return load_checkpoint(self.path)
        return None

    def save(self, state: dict[str, Any]) -> None:
        if self.path is not None and rank() == 0:
            save_checkpoint(state, self.path)


class _Run:
    """One call of :func:`fit`: the configured pieces and the loop over epochs and steps."""

    def __init__(
        self, model, task_loader, *, teacher, alignment, loss, brain_loader, heldout, val_loader,
        optimizer, lr, task_loss, epochs, warmup_epochs, precision, checkpointing, runaway,
        device, progress, max_steps, tap_options,
    ) -> None:  # fmt: skip
        from brainrdl.train.losses import RDLLoss

        epochs = check_scalar("epochs", epochs, int, min_val=1)
        if max_steps is not None:
            check_scalar("max_steps_per_epoch", max_steps, int, min_val=1)
        if teacher is None and (alignment or brain_loader is not None):
            raise ValueError("alignment/brain_loader given without a teacher")
        if teacher is not None and not alignment:
            raise ValueError("a teacher needs alignment={student_layer: target_name, ...}")
        if task_loader is None and brain_loader is None:
            raise ValueError(
                "fit needs a task_loader, or a teacher with a brain_loader (RDL-only training)"
            )
        self.device = check_device("device", device) or _model_device(model)
        refuse_outer_autocast(self.device)
        self.precision = Precision(precision, self.device)
        self.model = model.to(self.device)
        self.task_loader, self.teacher, self.val_loader = task_loader, teacher, val_loader
        self.epochs, self.warmup_epochs = epochs, warmup_epochs
        self.progress, self.max_steps = progress, max_steps
        self.checkpointing = checkpointing
        self.loss = loss if loss is not None else RDLLoss()
        self.pairs: list[AlignmentPair] = []
        if teacher is not None:
            self.pairs = parse_alignment(alignment, self.loss, list(teacher.names))
        for extra in {id(p.loss): p.loss for p in self.pairs}.values():
            if isinstance(extra, nn.Module):
                extra.to(self.device)
        self.task_loss = task_loss if task_loss is not None else nn.CrossEntropyLoss()
        self.optimizer = optimizer or self._default_optimizer(lr)
        _check_projections_optimized(self.pairs, self.optimizer)

        options = dict(tap_options or {})
        options["reduction"] = _student_reductions(self.pairs, options.get("reduction", "flatten"))
        layers = [p.layer for p in self.pairs]
        self.taps = LayerTaps(model, layers, **options) if layers else None
        self.brain = BrainBatches.coerce(brain_loader) if brain_loader is not None else None
        self.bn = (SeparateBatchNormStats(unwrap_model(model))
                   if self.brain is not None and self.brain.separate_bn else None)  # fmt: skip
        self.brain_stream = self.brain_ids = None
        if self.brain is not None:
            self.brain_stream = BatchStream(self.brain.loader(), endless=True, name="brain_loader")
            self.brain_ids = self.brain.stimulus_id_list()
        self.task_stream = (
            BatchStream(task_loader, name="task_loader") if task_loader is not None else None
        )
        self.heldout = None
        if heldout is not None:
            self.heldout = HeldoutMonitor(
                Heldout.coerce(heldout), self.pairs, teacher, self.device,
                default_distance=getattr(self.loss, "distance", "euclidean"),
            )  # fail before training  # fmt: skip
        self.watch = RunawayWatch(runaway)
        self.log: list[dict[str, Any]] = []
        self.credit, self.global_step, self.start_epoch = 0.0, 0, 0
        self.acc: dict[str, Any] | None = None  # the partial epoch of a resumed checkpoint
        self.warned_uncovered = False
        self._batch_ids: Any = None  # ids of the last alignment batch

    def _default_optimizer(self, lr: float) -> torch.optim.Optimizer:
        params = list(self.model.parameters())
        for extra in {id(p.loss): p.loss for p in self.pairs}.values():
            if isinstance(extra, nn.Module):
                params += list(extra.parameters())
        return torch.optim.Adam(params, lr=lr)

    # ------------------------------------------------------------------ the loop

    def run(self) -> pd.DataFrame:
        saved = self.checkpointing.prepare()
        if saved is not None:
            self._restore(saved)
        try:
            for epoch in range(self.start_epoch, self.epochs):
                row = self._epoch(epoch)
                if self.val_loader is not None:
                    row.update(evaluate(self.model, self.val_loader, self.task_loss, self.device,
                                        unpack=_unpack))  # fmt: skip
                if self.heldout is not None:
                    row.update(self.heldout.scores(self.model, self.bn))
                self.log.append(row)
                self.checkpointing.save(self._snapshot(epoch + 1, None))
        finally:
            if self.taps is not None:
                self.taps.close()
        return pd.DataFrame(self.log)

    def _epoch(self, epoch: int) -> dict[str, Any]:
        self.model.train()
        align_on = self.teacher is not None and epoch >= self.warmup_epochs
        if self.acc is not None:  # resumed mid-epoch: streams already fast-forwarded
            acc, self.acc = self.acc, None
        else:
            acc = {"sums": {}, "steps": 0, "seen": 0, "skipped": 0, "seconds": 0.0}
            if self.task_stream is not None:
                self.task_stream.start_pass()
        t0 = time.perf_counter() - acc["seconds"]
        total = self._steps_per_epoch()
        bar = _Bar(total, self.progress and rank() == 0, f"epoch {epoch}", acc["steps"])
        try:
            while self.max_steps is None or acc["steps"] < self.max_steps:
                if self.task_stream is not None:
                    try:
                        batch = self.task_stream.next()
                    except StopIteration:
                        break
                    values = self._task_step(batch, acc, epoch, align_on)
                else:
                    if acc["steps"] >= total:
                        break
                    values = self._brain_only_step(acc, epoch)
                self._finish_step(values, acc, epoch)
                acc["seconds"] = time.perf_counter() - t0
                bar.step(acc)
                if self.checkpointing.due(self.global_step):
                    self.checkpointing.save(self._snapshot(epoch, acc))
        finally:
            bar.close()
        if self.task_stream is not None:
            self.task_stream.end_pass()
        if acc["steps"] == 0:
            raise ValueError("task_loader yielded no batches")
        return self._row(epoch, acc, time.perf_counter() - t0)

    def _steps_per_epoch(self) -> int | None:
        if self.task_stream is not None:
            n = _len(self.task_loader)
        elif self.brain.steps_per_epoch is not None:
            n = self.brain.steps_per_epoch
        else:
            n = _len(self.brain.loader())
            if n is None:
                raise ValueError(
                    "RDL-only training over a brain loader without a length needs "
                    "BrainBatches(..., steps_per_epoch=N)"
                )
        if n is not None and self.max_steps is not None:
            n = min(n, self.max_steps)
        return n

    # ------------------------------------------------------------------ steps

    def _task_step(self, batch: Any, acc: dict, epoch: int, align_on: bool) -> StepValues:
        x, y, ids = _unpack(batch, self.device)
        values = StepValues()
        brain_due = 0
        if align_on and self.brain is not None:
            self.credit += self.brain.mix_ratio
            brain_due = int(self.credit)
            self.credit -= brain_due
        on_task = align_on and self.brain is None
        self.optimizer.zero_grad(set_to_none=True)
        if self.taps is not None:
            self.taps.capture = on_task
        # with brain batches to follow, DDP must not all-reduce after the task backward
        no_sync = brain_due and hasattr(self.model, "no_sync")
        with self.model.no_sync() if no_sync else contextlib.nullcontext():
            with self.precision.autocast():
                out = _logits(self.model(x), y)
                total = None
                if y is not None:
                    tl = self.task_loss(out.float(), y)
                    values.add("task_loss", tl)
                    total = tl
                    if out.ndim == 2 and y.ndim == 1:
                        values.add_stat("correct", (out.argmax(1) == y).sum())
                        acc["seen"] += y.numel()
                if on_task:
                    term = self._align(x, ids, values, acc, epoch)
                    if term is not None:
                        total = term if total is None else total + term
            if total is not None and total.requires_grad:
                self.precision.backward(total)
        for k in range(brain_due):
            last = k == brain_due - 1
            sync = not last and hasattr(self.model, "no_sync")
            with self.model.no_sync() if sync else contextlib.nullcontext():
                self._brain_batch(values, acc, epoch)
        return values

    def _brain_only_step(self, acc: dict, epoch: int) -> StepValues:
        values = StepValues()
        self.optimizer.zero_grad(set_to_none=True)
        self._brain_batch(values, acc, epoch)
        return values

    def _brain_batch(self, values: StepValues, acc: dict, epoch: int) -> None:
        """Forward and backward one brain batch; its gradient adds to the step's."""
        batch = self.brain_stream.next()
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                "brain_loader batches must be (images, stimulus_ids_or_positions); got "
                f"{type(batch).__name__}"
            )
        bx, bpos = batch[0].to(self.device), batch[1]
        _check_distinct(bpos)
        self.taps.capture = True
        # backward inside brain_mode: BatchNorm saved its buffers for the backward pass
        with self.bn.brain_mode() if self.bn is not None else contextlib.nullcontext():
            with self.precision.autocast():
                self.model(bx)
                term = self._align(bx, bpos, values, acc, epoch, self.brain_ids)
            if term is not None:
                self.precision.backward(term)
        self.taps.clear()

    def _align(
        self, x: torch.Tensor, ids: Any, values: StepValues, acc: dict, epoch: int,
        id_map: list[Any] | None = None,
    ) -> torch.Tensor | None:  # fmt: skip
        """Weighted sum of the alignment terms for the batch whose activations the taps hold.

        ``id_map`` turns positions from a brain loader into stimulus ids. A batch of fewer than
        :data:`MIN_ALIGN_ITEMS` items has no usable RDM: it is skipped and counted.
        """
        b = x.shape[0]
        if b < MIN_ALIGN_ITEMS and not is_distributed():
            acc["skipped"] += 1
            return None

        def to_ids(pos: Any) -> Any:
            if id_map is None or not isinstance(pos, torch.Tensor):
                return pos
            return [id_map[i] for i in pos.tolist()]

        if isinstance(ids, torch.Tensor):
            ids = ids.to(self.device)
        batch_ids = to_ids(ids)
        step = acc["steps"]
        with self.precision.full():  # RDMs and losses in float32
            local = self.teacher.targets(x.float(), batch_ids)
            if not self.warned_uncovered:
                self._note_uncovered(local, values)
            targets = global_targets(self.teacher, x, ids, local, to_ids)
            total = None
            for p in self.pairs:
                feats = self.taps.activations[p.layer]
                feats = all_gather_with_grad(feats) if is_distributed() else feats
                feats = feats.float()
                value = _term_value(p, feats, targets[p.target], epoch, step)
                term = value * p.weight
                key = f"align/{p.layer}"
                values.add(key, value, term, layer=p.layer, weight=p.weight)
                values.add_stat(f"act_rms/{p.layer}", feats.detach().pow(2).mean().sqrt())
                total = term if total is None else total + term
        self._batch_ids = batch_ids  # for the uncovered-ids warning's example
        return total

    def _note_uncovered(self, local: Mapping[str, Any], values: StepValues) -> None:
        for name in dict.fromkeys(p.target for p in self.pairs):
            covered = local[name].covered
            if covered is not None:
                values.add_stat(f"uncovered/{name}", (~covered).sum())
                values.add_stat(f"items/{name}", torch.tensor(float(covered.numel())))

    def _finish_step(self, values: StepValues, acc: dict, epoch: int) -> None:
        step = acc["steps"]
        host = values.check(epoch, step)  # the step's one device sync
        self._warn_uncovered(host)
        self.precision.step(self.optimizer)
        for key, (total, count) in host.items():
            if key.startswith(("uncovered/", "items/")):
                continue
            entry = acc["sums"].setdefault(key, [0.0, 0])
            entry[0] += total
            entry[1] += count
        self.watch.update(host, epoch, step)
        acc["steps"] += 1
        self.global_step += 1

    def _warn_uncovered(self, host: Mapping[str, list[float]]) -> None:
        if self.warned_uncovered:
            return
        for key, (missing, _) in host.items():
            if key.startswith("uncovered/") and missing > 0:
                name = key.partition("/")[2]
                items = int(host[f"items/{name}"][0])
                example = _first_uncovered(self.teacher, self._batch_ids)
                warnings.warn(
                    f"{int(missing)} of the batch's {items} stimulus ids are not covered by "
                    f"target {name!r} (e.g. {example!r}) and "
                    "are masked out of its alignment term; this warning is shown once per fit",
                    UserWarning,
                    stacklevel=6,
                )
                self.warned_uncovered = True
                return

    def _row(self, epoch: int, acc: dict, seconds: float) -> dict[str, Any]:
        sums = acc["sums"]
        row: dict[str, Any] = {"epoch": epoch}
        task = sums.pop("task_loss", None)
        row["task_loss"] = task[0] / task[1] if task else float("nan")
        correct = sums.pop("correct", None)
        row["task_accuracy"] = correct[0] / acc["seen"] if correct and acc["seen"] else float("nan")
        for key in sorted(k for k in sums if k.startswith("align/")):
            row[key] = sums[key][0] / sums[key][1]
        for p in self.pairs:
            row.setdefault(f"align/{p.layer}", float("nan"))
        if self.pairs:
            row["align_skipped"] = acc["skipped"]
        for key in sorted(k for k in sums if k.startswith("act_rms/")):
            row[key] = sums[key][0] / sums[key][1]
        row["seconds"] = seconds
        return row

    # ------------------------------------------------------------------ checkpoints

    def _generators(self) -> list[torch.Generator]:
        streams = [s for s in (self.task_stream, self.brain_stream) if s is not None]
        return [g for s in streams for g in s.generators]

    def _snapshot(self, epoch: int, acc: dict | None) -> dict[str, Any]:
        """Everything a resumed run needs; ``acc`` is the partial epoch (None at its end)."""
        return {
            "format": _CHECKPOINT_FORMAT,
            "epoch": epoch,
            "acc": acc,
            "global_step": self.global_step,
            "credit": self.credit,
            "log": self.log,
            "task_stream": self.task_stream.state_dict() if self.task_stream else None,
            "brain_stream": self.brain_stream.state_dict() if self.brain_stream else None,
            "rng": capture_rng(self._generators()),
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "losses": [
                p.loss.state_dict() if isinstance(p.loss, nn.Module) else {} for p in self.pairs
            ],
            "bn": self.bn.state_dict() if self.bn is not None else [],
            "precision": self.precision.state_dict(),
            "watch": self.watch.state_dict(),
            "warned_uncovered": self.warned_uncovered,
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        path = self.checkpointing.path
        if saved.get("format") != _CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint {path.resolve()} was written by another version of brainrdl.fit "
                f"(format {saved.get('format')!r}, expected {_CHECKPOINT_FORMAT}); it cannot be "
                "resumed bit-identically: delete it or resume with the version that wrote it"
            )
        try:
            unwrap_model(self.model).load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"checkpoint {path.resolve()} does not fit this model / optimizer: {err}"
            ) from err
        for p, s in zip(self.pairs, saved["losses"]):
            if isinstance(p.loss, nn.Module) and s:
                p.loss.load_state_dict(s)
        if self.bn is not None and saved["bn"]:
            self.bn.load_state_dict(saved["bn"])
        self.precision.load_state_dict(saved["precision"])
        self.watch.load_state_dict(saved["watch"])
        self.log, self.credit = list(saved["log"]), float(saved["credit"])
        self.global_step, self.start_epoch = int(saved["global_step"]), int(saved["epoch"])
        self.warned_uncovered = bool(saved["warned_uncovered"])
        self.acc = saved["acc"]
        # replay each stream's current pass up to where it was, then put every RNG where the
        # checkpoint left it (the replay drew from them)
        if self.task_stream is not None and saved["task_stream"] is not None:
            self.task_stream.load_state_dict(saved["task_stream"])
        if self.brain_stream is not None and saved["brain_stream"] is not None:
            self.brain_stream.load_state_dict(saved["brain_stream"])
        restore_rng(saved["rng"], self._generators())


def _term_value(
    pair: AlignmentPair, feats: torch.Tensor, target: Any, epoch: int, step: int
) -> torch.Tensor:
    """One alignment term; a non-finite value found by the loss's own check is named."""
    try:
        return alignment_value(pair, feats, target)
    except ValueError as err:
        text = str(err)
        if any(w in text for w in ("NaN", "infinite", "not finite", "non-finite")):
            raise NonFiniteLossError(
                f"loss term 'align/{pair.layer}' (layer {pair.layer!r}) is not finite at epoch "
                f"{epoch}, step {step}: {text}",
                term=f"align/{pair.layer}", layer=pair.layer, epoch=epoch, step=step,
            ) from err  # fmt: skip
        raise ValueError(
            f"alignment term 'align/{pair.layer}' at epoch {epoch}, step {step}: {text}"
        ) from err


def _first_uncovered(teacher: Any, ids: Any) -> Any:
    """An id of the batch ``ids`` that the teacher does not list (for the warning), else "?"."""
    covers = getattr(teacher, "stimulus_ids", None)
    if ids is None or covers is None:
        return "?"
    covers = set(covers)
    for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
        if i not in covers:
            return i
    return "?"


def _student_reductions(
    pairs: list[AlignmentPair], reduction: str | Mapping[str, str]
) -> str | dict[str, str]:
    """Per-layer student reductions: ``"none"`` for layers whose loss consumes maps."""
    kp_layers = [p.layer for p in pairs if is_projection(p.loss)]
    if not kp_layers:
        return reduction
    named = {} if isinstance(reduction, str) else dict(reduction)
    default = reduction if isinstance(reduction, str) else "flatten"
    out = {p.layer: named.get(p.layer, default) for p in pairs}
    out.update({layer: named.get(layer, "none") for layer in kp_layers})
    return {**named, **out}


def _check_projections_optimized(
    pairs: list[AlignmentPair], optimizer: torch.optim.Optimizer
) -> None:
    """Raise a ValueError if a KnowledgeProjection's parameters are not in ``optimizer``."""
    held = {id(q) for group in optimizer.param_groups for q in group["params"]}
    for p in pairs:
        if not isinstance(p.loss, nn.Module):
            continue
        missing = [n for n, q in p.loss.named_parameters() if q.requires_grad and id(q) not in held]
        if missing:
            raise ValueError(
                f"alignment[{p.layer!r}]: the {type(p.loss).__name__}'s parameters {missing} are "
                "not in the given optimizer, so they would never be trained; add them, "
                "e.g. torch.optim.Adam([*model.parameters(), *kp.parameters()]), or leave "
                "optimizer=None"
            )


# ----------------------------------------------------------------------------- helpers


class _Bar:
    """A tqdm bar over an epoch's steps (or nothing)."""

    def __init__(self, total: int | None, enabled: bool, desc: str, initial: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, initial=initial)

    def step(self, acc: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        task = acc["sums"].get("task_loss")
        if task:
            self.bar.set_postfix(task_loss=task[0] / task[1])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _logits(out: Any, labels: torch.Tensor | None) -> Any:
    """The model's output, which the task loss needs as one tensor (named error otherwise)."""
    if labels is not None and not isinstance(out, torch.Tensor):
        raise InvalidTypeError(
            f"model: forward returned a {type(out).__name__}, but the task loss needs one tensor "
            "of logits; wrap the model so that forward returns the logits (e.g. out[0] of the "
            "tuple, or out.logits of a Hugging Face output)"
        )
    return out


def _unpack(batch: Any, device: Any) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    if isinstance(batch, torch.Tensor):
        return batch.to(device), None, None
    if isinstance(batch, Mapping):
        x, y, ids = batch["inputs"], batch.get("labels"), batch.get("stimulus_ids")
    elif len(batch) == 2:
        (x, y), ids = batch, None
    elif len(batch) == 3:
        x, y, ids = batch
    else:
        raise ValueError(
            "task batches must be inputs, (inputs, labels), (inputs, labels, stimulus_ids) or a "
            f"dict with 'inputs'; got a {type(batch).__name__} of {len(batch)} items"
        )
    y = y.to(device) if isinstance(y, torch.Tensor) else y
    return x.to(device), y, ids


def _check_distinct(ids: Any) -> None:
    """Refuse a brain batch that repeats a stimulus (checked on the host copy, no sync)."""
    if isinstance(ids, torch.Tensor):
        if ids.device.type != "cpu":
            return
        n, distinct = ids.numel(), int(torch.unique(ids).numel())
        values = ids.tolist()
    else:
        values = list(ids)
        n, distinct = len(values), len(set(values))
    if distinct != n:
        seen: set[Any] = set()
        repeated = next(v for v in values if v in seen or seen.add(v))
        raise ValueError(
            f"brain_loader: a batch repeats stimulus {repeated!r} ({n - distinct} repeats); "
            "brain batches must hold distinct stimuli (a repeat pairs with itself at distance 0)"
        )
