"""``brainrdl.fit``: ordinary task training plus alignment of chosen layers toward a teacher.

Task batches come from ``task_loader``; alignment batches either from the same batches (a network
teacher, distillation) or from a separate, small brain-stimulus set (``brain_loader``) interleaved
at ``mix_ratio`` brain batches per task batch. Each epoch logs task loss and accuracy, each
alignment term, and the RSA of each tapped layer with its target on held-out stimuli: a low
alignment loss alone can be gamed, so the held-out RSA and accuracy are logged beside it.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from brainrdl.nets.taps import LayerTaps, unwrap_model
from brainrdl.rsa.distances import pairwise_rdm
from brainrdl.train.batchnorm import SeparateBatchNormStats
from brainrdl.train.brain_batches import brain_loader as make_brain_loader
from brainrdl.train.brain_batches import endless
from brainrdl.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from brainrdl.train.distributed import all_gather_with_grad, is_distributed, rank
from brainrdl.train.terms import (
    AlignmentPair,
    alignment_value,
    global_targets,
    is_projection,
    parse_alignment,
    rsa_pearson,
)
from brainrdl.validation import check_scalar


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the term and the step."""


def fit(
    model: nn.Module,
    task_loader: Iterable[Any],
    *,
    teacher: Any = None,
    alignment: Mapping[str, Any] | None = None,
    loss: Callable[..., torch.Tensor] | None = None,
    brain_loader: Any = None,
    brain_batch_size: int = 64,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    task_loss: Callable[..., torch.Tensor] | None = None,
    epochs: int = 1,
    mix_ratio: float = 1.0,
    warmup_epochs: int = 0,
    separate_bn: bool = False,
    heldout: tuple[Any, Sequence[Any]] | None = None,
    val_loader: Iterable[Any] | None = None,
    reduction: str | Mapping[str, str] = "flatten",
    projection_dim: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    plot: bool | str | Path = False,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
) -> pd.DataFrame:
    """Train ``model`` on its task while pulling tapped layers toward a teacher's RDMs.

    Parameters
    ----------
    model
        The student (may be DDP-wrapped; layer names are those of the inner model).
    task_loader
        Yields ``(inputs, labels)``, ``(inputs, labels, stimulus_ids)`` or ``inputs`` alone
        (no task loss, e.g. pure distillation).
    teacher
        A :class:`brainrdl.train.teachers.Teacher` (brain or network); None trains the task only.
    alignment
        ``{student_layer: target}``, ``{student_layer: (target, weight)}`` or
        ``{student_layer: (target, weight, loss)}``.
        A :class:`brainrdl.train.losses.KnowledgeProjection` as a layer's loss works on conv maps:
        that
        student layer is tapped with reduction ``"none"`` (unless ``reduction`` maps the layer
        itself), and a network teacher's unreduced activations (``Target.maps``) are projected
        into it, e.g. ``{"1": ("1", 1.0, KnowledgeProjection(16, 8))}`` for a teacher map
        (B, 16, H, W) and a student map (B, 8, H', W'). The projection is trained with the student.
    loss
        Default alignment loss (``brainrdl.RDLLoss()``); any brainrdl loss works (see
        :func:`brainrdl.train.terms.alignment_value`).
    brain_loader
        Brain-stimulus batches ``(images, stimulus_ids_or_positions)``, or a tuple
        ``(images, stimulus_ids)`` from which a loader of distinct stimuli is built
        (``brain_batch_size`` each). None: alignment runs on the task batches.
    optimizer, lr
        Any optimizer; default Adam(lr) over the model's and the losses' parameters. A given
        optimizer must also hold the parameters of every KnowledgeProjection in ``alignment``
        (e.g. ``Adam([*model.parameters(), *kp.parameters()])``), else a ValueError.
    task_loss
        Default ``nn.CrossEntropyLoss()``.
    epochs, warmup_epochs
        Epochs in all; the alignment terms start after ``warmup_epochs``.
    mix_ratio
        Brain batches per task batch (0.5: one every second step; 2: two per step).
    separate_bn
        Brain batches use their own BatchNorm running statistics.
    heldout
        ``(images, stimulus_ids)`` of stimuli never trained on; each epoch logs
        ``heldout_rsa/<layer>``: Pearson r of the layer's RDM with its target on these. Every
        held-out id must be covered by the aligned targets (else a ValueError before training).
        Alignment batches need at least 2 covered ids (else a ValueError); items some target
        does not cover are masked out of its term, with one warning per fit.
    val_loader
        Labelled batches for ``val_loss`` / ``val_accuracy`` per epoch.
    reduction, projection_dim
        Passed to :class:`brainrdl.nets.taps.LayerTaps` for the student's layers; layers whose loss
        is a KnowledgeProjection default to ``"none"`` (kept shape) instead.
    checkpoint_dir, resume
        Save ``checkpoint_dir/last.pt`` atomically each epoch; ``resume=True`` continues from it.
    device
        Where to train (default: the model's device).
    progress, plot
        tqdm bars; ``plot=True`` draws the log, a path saves the figure there.
    seed
        Seed of the brain-stimulus batch order.
    max_steps_per_epoch
        Stop each epoch after this many task batches (quick runs).

    Returns
    -------
    pandas.DataFrame
        One row per epoch.

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
    from brainrdl.train.losses import RDLLoss

    epochs = check_scalar("epochs", epochs, int, min_val=1)
    if not mix_ratio >= 0:
        raise ValueError(f"mix_ratio must be >= 0; got {mix_ratio!r}")
    if teacher is None and (alignment or brain_loader is not None):
        raise ValueError("alignment/brain_loader given without a teacher")
    if teacher is not None and not alignment:
        raise ValueError("a teacher needs alignment={student_layer: target_name, ...}")
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    loss = loss if loss is not None else RDLLoss()
    if isinstance(loss, nn.Module):
        loss.to(device)
    pairs: list[AlignmentPair] = []
    if teacher is not None:
        pairs = parse_alignment(alignment, loss, list(teacher.names))
        for p in pairs:
            if isinstance(p.loss, nn.Module):
                p.loss.to(device)
    task_loss = task_loss if task_loss is not None else nn.CrossEntropyLoss()
    if optimizer is None:
        params = list(model.parameters())
        for extra in {id(p.loss): p.loss for p in pairs}.values():
            if isinstance(extra, nn.Module):
                params += list(extra.parameters())
        optimizer = torch.optim.Adam(params, lr=lr)
    else:
        _check_projections_optimized(pairs, optimizer)

    taps = LayerTaps(
        model, [p.layer for p in pairs] or [], reduction=_student_reductions(pairs, reduction),
        projection_dim=projection_dim, seed=seed,
    ) if pairs else None  # fmt: skip
    bn = SeparateBatchNormStats(unwrap_model(model)) if separate_bn else None
    brain_iter, brain_ids = None, None
    if teacher is not None and brain_loader is not None:
        if isinstance(brain_loader, tuple):
            brain_loader = make_brain_loader(
                brain_loader[0], brain_loader[1], batch_size=brain_batch_size, seed=seed
            )
        brain_ids = getattr(getattr(brain_loader, "dataset", None), "stimulus_ids", None)
        brain_iter = endless(brain_loader)
    distance = getattr(loss, "distance", "euclidean")
    if heldout is not None and teacher is not None:
        _heldout_targets(teacher, pairs, heldout[0], heldout[1], device)  # fail before training

    state = _State()
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        state.restore(load_checkpoint(ckpt, map_location=device), model, optimizer, pairs, bn)
        if brain_iter is not None:
            for _ in range(state.drawn):
                next(brain_iter)

    try:
        for epoch in range(state.epoch + 1, epochs):
            align_on = teacher is not None and epoch >= warmup_epochs
            row = _train_epoch(
                model, task_loader, teacher, pairs, taps, task_loss, optimizer, device,
                epoch=epoch, align_on=align_on, brain_iter=brain_iter, brain_ids=brain_ids,
                mix_ratio=mix_ratio, bn=bn, state=state, progress=progress,
                max_steps=max_steps_per_epoch,
            )  # fmt: skip
            if val_loader is not None:
                row.update(evaluate(model, val_loader, task_loss, device))
            if heldout is not None and teacher is not None:
                for layer, r in heldout_rsa(
                    model, taps, teacher, pairs, heldout, device, distance, bn
                ).items():
                    row[f"heldout_rsa/{layer}"] = r
            state.log.append(row)
            state.epoch = epoch
            if ckpt is not None and rank() == 0:
                save_checkpoint(state.snapshot(model, optimizer, pairs, bn), ckpt)
    finally:
        if taps is not None:
            taps.close()
    log = pd.DataFrame(state.log)
    if plot:
        plot_log(log, path=None if plot is True else plot)
    return log


def _student_reductions(
    pairs: list[AlignmentPair], reduction: str | Mapping[str, str]
) -> str | dict[str, str]:
    """Per-layer student reductions: ``"none"`` for KnowledgeProjection layers not named in it."""
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
        if not is_projection(p.loss):
            continue
        missing = [n for n, q in p.loss.named_parameters() if q.requires_grad and id(q) not in held]
        if missing:
            raise ValueError(
                f"alignment[{p.layer!r}]: the KnowledgeProjection's parameters {missing} are not "
                "in the given optimizer, so the projection would never be trained; add them, "
                "e.g. torch.optim.Adam([*model.parameters(), *kp.parameters()]), or leave "
                "optimizer=None"
            )


class _State:
    """What a checkpoint carries besides weights: epoch, log rows, brain-mix credit."""

    def __init__(self) -> None:
        # brain batches drawn so far: a resumed run fast-forwards the stream to the same place
        self.epoch, self.log, self.credit, self.drawn = -1, [], 0.0, 0
        self.warned_uncovered = False  # the uncovered-ids warning is given once per fit

    def snapshot(self, model, optimizer, pairs, bn) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "log": self.log,
            "credit": self.credit,
            "drawn": self.drawn,
            "model": unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "losses": [p.loss.state_dict() if isinstance(p.loss, nn.Module) else {} for p in pairs],
            "bn": bn.state_dict() if bn is not None else [],
            "rng": torch.get_rng_state(),
        }

    def restore(self, saved, model, optimizer, pairs, bn) -> None:
        unwrap_model(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        for p, s in zip(pairs, saved["losses"]):
            if isinstance(p.loss, nn.Module) and s:
                p.loss.load_state_dict(s)
        if bn is not None and saved["bn"]:
            bn.load_state_dict(saved["bn"])
        torch.set_rng_state(saved["rng"].cpu())
        self.epoch, self.log, self.credit = saved["epoch"], list(saved["log"]), saved["credit"]
        self.drawn = int(saved.get("drawn", 0))


def _train_epoch(
    model, task_loader, teacher, pairs, taps, task_loss, optimizer, device, *, epoch, align_on,
    brain_iter, brain_ids, mix_ratio, bn, state, progress, max_steps,
) -> dict[str, Any]:  # fmt: skip
    model.train()
    sums: dict[str, float] = {}
    correct = seen = steps = 0
    t0 = time.perf_counter()
    bar = _progress(task_loader, progress and rank() == 0, f"epoch {epoch}")
    for batch in bar:
        if max_steps is not None and steps >= max_steps:
            break
        x, y, ids = _unpack(batch, device)
        on_task = align_on and brain_iter is None
        brain_due = 0
        if align_on and brain_iter is not None:
            state.credit += mix_ratio
            brain_due = int(state.credit)
            state.credit -= brain_due
        optimizer.zero_grad(set_to_none=True)
        if taps is not None:
            taps.capture = on_task
        # with brain batches to follow, DDP must not all-reduce after the task backward
        sync = model.no_sync() if brain_due and hasattr(model, "no_sync") else _null()
        with sync:
            out = model(x)
            total = out.new_zeros(())
            if y is not None:
                tl = _finite(task_loss(out, y), "task_loss", epoch, steps)
                total = total + tl
                _add(sums, "task_loss", tl)
                if out.ndim == 2 and y.ndim == 1:
                    correct += int((out.argmax(1) == y).sum())
                    seen += y.numel()
            if on_task:
                total = total + _align(teacher, pairs, taps, x, ids, sums, epoch, steps, state)
            if total.requires_grad:
                total.backward()
        for k in range(brain_due):
            batch = next(brain_iter)
            state.drawn += 1
            bx, bpos = batch[0].to(device), batch[1]
            taps.capture = True
            last = k == brain_due - 1
            # backward inside brain_mode: BatchNorm saved its buffers for the backward pass
            with bn.brain_mode() if bn is not None else _null():
                with model.no_sync() if not last and hasattr(model, "no_sync") else _null():
                    model(bx)
                    term = _align(
                        teacher, pairs, taps, bx, bpos, sums, epoch, steps, state, brain_ids
                    )
                    term.backward()
        if taps is not None:
            taps.clear()
        optimizer.step()
        steps += 1
        if progress and hasattr(bar, "set_postfix") and "task_loss" in sums:
            bar.set_postfix(task_loss=sums["task_loss"] / steps)
    if steps == 0:
        raise ValueError("task_loader yielded no batches")
    row: dict[str, Any] = {"epoch": epoch}
    row["task_loss"] = sums.pop("task_loss", math.nan * steps) / steps
    row["task_accuracy"] = correct / seen if seen else math.nan
    for key, value in sums.items():
        row[key] = value[0] / max(value[1], 1) if isinstance(value, list) else value
    row["seconds"] = time.perf_counter() - t0
    return row


def _align(
    teacher, pairs, taps, x, ids, sums, epoch, step, state=None, id_map=None
) -> torch.Tensor:
    """Weighted sum of the alignment terms for the batch whose activations ``taps`` holds.

    ``id_map`` (the stimulus set's ids) turns positions from a brain loader into stimulus ids.
    Items a target does not cover are masked out of its term, with one warning per fit.
    """

    def to_ids(pos: Any) -> Any:
        if id_map is None or not isinstance(pos, torch.Tensor):
            return pos
        return [id_map[i] for i in pos.tolist()]

    if isinstance(ids, torch.Tensor):
        ids = ids.to(x.device)
    batch_ids = to_ids(ids)
    local = teacher.targets(x, batch_ids)
    if state is not None and not state.warned_uncovered:
        state.warned_uncovered = _warn_uncovered(local, pairs, batch_ids)
    targets = global_targets(teacher, x, ids, local, to_ids)
    total = None
    for p in pairs:
        feats = (
            all_gather_with_grad(taps.activations[p.layer])
            if is_distributed()
            else (taps.activations[p.layer])
        )
        value = _finite(
            alignment_value(p.loss, feats, targets[p.target], p.layer),
            f"align/{p.layer}",
            epoch,
            step,
        )
        key = f"align/{p.layer}"
        entry = sums.setdefault(key, [0.0, 0])
        entry[0] += float(value.detach())
        entry[1] += 1
        term = value * p.weight
        total = term if total is None else total + term
    return total


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[Any], task_loss: Callable[..., torch.Tensor], device: Any
) -> dict[str, float]:
    """Mean ``val_loss`` and ``val_accuracy`` over labelled batches, in eval mode.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 2)
    >>> sorted(evaluate(net, [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))],
    ...                 nn.CrossEntropyLoss(), "cpu"))
    ['val_accuracy', 'val_loss']
    """
    was = model.training
    model.eval()
    total = correct = seen = 0.0
    for batch in loader:
        x, y, _ = _unpack(batch, device)
        out = model(x)
        total += float(task_loss(out, y)) * y.shape[0]
        correct += float((out.argmax(1) == y).sum())
        seen += y.shape[0]
    model.train(was)
    return {"val_loss": total / seen, "val_accuracy": correct / seen}


@torch.no_grad()
def heldout_rsa(
    model: nn.Module, taps: LayerTaps, teacher: Any, pairs: list[AlignmentPair],
    heldout: tuple[Any, Sequence[Any]], device: Any, distance: str = "euclidean",
    bn: SeparateBatchNormStats | None = None, chunk: int = 256,
) -> dict[str, float]:  # fmt: skip
    """Pearson r of each tapped layer's RDM with its target on the held-out stimuli."""
    images, ids = heldout
    images = torch.as_tensor(images, dtype=torch.float32).to(device)
    was = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {p.layer: [] for p in pairs}
    previous, taps.capture = taps.capture, True
    try:
        with bn.brain_mode() if bn is not None else _null():
            for start in range(0, images.shape[0], chunk):
                model(images[start : start + chunk])
                for p in pairs:
                    feats[p.layer].append(taps.activations[p.layer])
    finally:
        taps.capture = previous
        taps.clear()
        model.train(was)
    targets = _heldout_targets(teacher, pairs, images, ids, device)
    return {
        p.layer: rsa_pearson(pairwise_rdm(torch.cat(feats[p.layer]).flatten(1).double(),
                                          distance), targets[p.target])
        for p in pairs
    }  # fmt: skip


def _heldout_targets(
    teacher: Any, pairs: list[AlignmentPair], images: Any, ids: Any, device: Any
) -> dict[str, Any]:
    """The teacher's targets on the held-out stimuli; a ValueError if a target misses any."""
    images = torch.as_tensor(images, dtype=torch.float32).to(device)
    id_arg = ids if not isinstance(ids, torch.Tensor) else ids.to(device)
    try:
        targets = teacher.targets(images, id_arg)
    except ValueError as err:
        raise ValueError(f"heldout: {err}") from err
    for name in dict.fromkeys(p.target for p in pairs):
        covered = targets[name].covered
        if covered is not None and not bool(covered.all()):
            missing = (~covered).nonzero().reshape(-1).tolist()
            raise ValueError(
                f"heldout: {len(missing)} of the {covered.numel()} held-out stimulus ids are not "
                f"covered by target {name!r} (e.g. {_id_at(ids, missing[0])!r}); held-out RSA "
                "needs every held-out stimulus in the target RDMs"
            )
    return targets


def _warn_uncovered(targets: Mapping[str, Any], pairs: list[AlignmentPair], ids: Any) -> bool:
    """Warn when some items of the batch are not covered by an aligned target; True if warned."""
    for name in dict.fromkeys(p.target for p in pairs):
        covered = targets[name].covered
        if covered is None or bool(covered.all()):
            continue
        missing = (~covered).nonzero().reshape(-1).tolist()
        warnings.warn(
            f"{len(missing)} of the batch's {covered.numel()} stimulus ids are not covered by "
            f"target {name!r} (e.g. {_id_at(ids, missing[0])!r}) and are masked out of its "
            "alignment term; this warning is shown once per fit",
            UserWarning,
            stacklevel=4,
        )
        return True
    return False


def _id_at(ids: Any, i: int) -> Any:
    value = ids[i]
    return value.item() if isinstance(value, torch.Tensor) else value


def plot_log(log: pd.DataFrame, path: str | Path | None = None):
    """Learning curves of a :func:`fit` log: losses, accuracies and held-out RSA per epoch.

    Examples
    --------
    >>> import pandas as pd
    >>> fig = plot_log(pd.DataFrame({"epoch": [0, 1], "task_loss": [1.0, 0.5]}))
    >>> len(fig.axes)
    3
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    groups = [
        ("loss", [c for c in log if c.endswith("loss") or c.startswith("align/")]),
        ("accuracy", [c for c in log if c.endswith("accuracy")]),
        ("held-out RSA (Pearson r)", [c for c in log if c.startswith("heldout_rsa/")]),
    ]
    for ax, (title, cols) in zip(axes, groups):
        for c in cols:
            ax.plot(log["epoch"], log[c], marker="o", label=c)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if cols:
            ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


# ----------------------------------------------------------------------------- helpers


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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
            "task batches must be inputs, (inputs, labels) or (inputs, labels, stimulus_ids); "
            f"got a {type(batch).__name__} of {len(batch)} items"
        )
    y = y.to(device) if isinstance(y, torch.Tensor) else y
    return x.to(device), y, ids


def _finite(value: torch.Tensor, term: str, epoch: int, step: int) -> torch.Tensor:
    if not bool(torch.isfinite(value.detach()).all()):
        raise NonFiniteLossError(
            f"loss term {term!r} is {float(value.detach().reshape(-1)[0])} at epoch {epoch}, "
            f"step {step}; lower the learning rate or the term's weight, or check the inputs"
        )
    return value


def _add(sums: dict[str, Any], key: str, value: torch.Tensor) -> None:
    sums[key] = sums.get(key, 0.0) + float(value.detach())


def _progress(iterable: Iterable[Any], enabled: bool, desc: str) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def _null() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()
