"""What :func:`brainrdl.fit` logs besides its losses: validation accuracy and held-out RSA.

A low alignment loss on the training stimuli can be reached without the representation carrying
what matters, so each epoch can score the tapped layers on stimuli never trained on:
:class:`Heldout` names those stimuli, the RDMs to score against (the training teacher's, or
separate held-out RDM sets such as human and monkey IT that the training teacher does not
cover), the comparison method(s) and the layers.

Examples
--------
>>> import numpy as np, rsatoolbox, torch
>>> from torch import nn
>>> ids = list(range(8))
>>> rdms = rsatoolbox.rdm.RDMs(np.random.default_rng(0).random((1, 28)),
...                            pattern_descriptors={"stimulus": ids})
>>> spec = Heldout(torch.randn(8, 5), ids, targets={"IT": rdms}, method="spearman", layers=["0"])
>>> net = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
>>> monitor = HeldoutMonitor(spec, pairs=[], teacher=None, device=torch.device("cpu"))
>>> list(monitor.scores(net))
['heldout_spearman/IT/0']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from brainrdl.nets.taps import LayerTaps
from brainrdl.rsa.comparison import compare
from brainrdl.rsa.distances import pairwise_rdm, upper_tri
from brainrdl.train.teachers import BrainTeacher, Target

__all__ = ["Heldout", "HeldoutMonitor", "evaluate"]


@dataclass
class Heldout:
    """Held-out stimuli scored each epoch, and what to score them against.

    Parameters
    ----------
    images
        The held-out stimuli (N, ...), never trained on.
    stimulus_ids
        One id per image, as the target RDMs list them.
    targets
        None: the training teacher's targets of each aligned layer (every held-out id must be
        covered by them). Otherwise held-out RDM sets the training teacher need not cover:
        rsatoolbox ``RDMs``, a :class:`~brainrdl.train.teachers.BrainTeacher`, or a dict
        ``{label: RDMs | BrainTeacher}`` for several (e.g. ``{"human_IT": h, "monkey_IT": m}``).
        Several RDMs under one label are averaged (NaN-aware), as a ``BrainTeacher`` does.
    method
        :func:`brainrdl.compare` method(s) (``"corr"``, ``"spearman"``, ``"tau-a"``, ...).
    layers
        Student layers to score (default: the aligned layers; required when training without a
        teacher, e.g. a task-only baseline).
    distance
        The student RDM's distance (default: the alignment loss's, else ``"euclidean"``).

    Log columns are ``heldout_<method>/<label>/<layer>`` (``heldout_rsa`` for ``"corr"``);
    with ``targets=None`` the label is left out: ``heldout_rsa/<layer>``.

    Examples
    --------
    >>> import numpy as np, rsatoolbox, torch
    >>> ids = [f"s{i}" for i in range(5)]
    >>> it = rsatoolbox.rdm.RDMs(np.random.default_rng(0).random((1, 10)),
    ...                          pattern_descriptors={"stimulus": ids})
    >>> h = Heldout(torch.zeros(5, 3), ids, targets={"IT": it}, method=["corr", "spearman"])
    >>> h.method
    ['corr', 'spearman']
    """

    images: Any
    stimulus_ids: Sequence[Any]
    targets: Any = None
    method: str | Sequence[str] = "corr"
    layers: Sequence[str] | None = None
    distance: str | None = None

    @classmethod
    def coerce(cls, value: Any) -> Heldout:
        """A Heldout from ``fit(heldout=...)``: itself or a tuple ``(images, stimulus_ids)``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(value[0], value[1])
        raise TypeError(
            "heldout must be (images, stimulus_ids) or a brainrdl.train.monitor.Heldout; got "
            f"{type(value).__name__}"
        )


def _prefix(method: str) -> str:
    return "heldout_rsa" if method == "corr" else f"heldout_{method}"


class HeldoutMonitor:
    """Scores of the student's layers on held-out stimuli; targets are checked at construction.

    Parameters
    ----------
    spec : Heldout
        What to score (:class:`Heldout`).
    pairs : Sequence[Any]
        The fit's alignment pairs (layers and targets of the training teacher).
    teacher : Any
        The training teacher (used when ``spec.targets`` is None).
    device : torch.device
        Where the student runs.
    default_distance : str
        Student RDM distance when ``spec.distance`` is None.
    """

    def __init__(
        self, spec: Heldout, pairs: Sequence[Any], teacher: Any, device: torch.device,
        default_distance: str = "euclidean",
    ) -> None:  # fmt: skip
        self.spec, self.device = spec, device
        self.images = torch.as_tensor(spec.images, dtype=torch.float32)
        ids = spec.stimulus_ids
        if len(ids) != self.images.shape[0]:
            raise ValueError(
                f"heldout: {len(ids)} stimulus ids for {self.images.shape[0]} images"
            )
        self.distance = spec.distance or default_distance
        self.methods = [spec.method] if isinstance(spec.method, str) else list(spec.method)
        if not self.methods:
            raise ValueError("heldout: method must name at least one comparison")
        # (column, layer, target vector, kept pairs) for every score
        self.jobs: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []
        if spec.targets is None:
            if teacher is None:
                raise ValueError(
                    "heldout: without a teacher, give the RDMs to score against: "
                    "Heldout(images, ids, targets={label: RDMs}, layers=[...])"
                )
            layers = {p.layer: p.target for p in pairs}
            if spec.layers is not None:
                unknown = [lay for lay in spec.layers if lay not in layers]
                if unknown:
                    raise ValueError(
                        f"heldout: layers {unknown} are not aligned, so the training teacher "
                        "has no target for them; give targets= for them"
                    )
                layers = {lay: layers[lay] for lay in spec.layers}
            targets = self._targets(teacher, "the training teacher", list(dict.fromkeys(
                layers.values())))  # fmt: skip
            for method in self.methods:
                for layer, name in layers.items():
                    self.jobs.append((f"{_prefix(method)}/{layer}", layer, *targets[name]))
        else:
            layers = list(spec.layers) if spec.layers is not None else [p.layer for p in pairs]
            if not layers:
                raise ValueError("heldout: name the student layers to score (layers=[...])")
            for label, (t, names) in self._teachers(spec.targets).items():
                found = self._targets(t, f"targets[{label!r}]", names)
                for name in names:
                    tag = label if len(names) == 1 else f"{label}.{name}"
                    for method in self.methods:
                        for layer in layers:
                            self.jobs.append(
                                (f"{_prefix(method)}/{tag}/{layer}", layer, *found[name])
                            )
        self.layers = list(dict.fromkeys(job[1] for job in self.jobs))
        self._warned = False

    @staticmethod
    def _teachers(targets: Any) -> dict[str, tuple[Any, list[str]]]:
        def is_teacher(value: Any) -> bool:
            return hasattr(value, "targets") and hasattr(value, "names")

        if isinstance(targets, Mapping):
            out = {}
            for label, value in targets.items():
                # the RDMs under one label are one target (their mean)
                t = value if is_teacher(value) else BrainTeacher(
                    value, target_names=["brain"] * int(value.n_rdm))  # fmt: skip
                out[str(label)] = (t, list(t.names))
            return out
        t = targets if is_teacher(targets) else BrainTeacher(targets)  # named by "roi"
        return {name: (t, [name]) for name in t.names}

    def _targets(
        self, teacher: Any, where: str, names: list[str]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Upper-triangle target vector and kept pairs of each target name (checked once)."""
        try:
            found = teacher.targets(self.images, self.spec.stimulus_ids)
        except ValueError as err:
            raise ValueError(f"heldout ({where}): {err}") from err
        out = {}
        for name in names:
            t: Target = found[name]
            if t.covered is not None and not bool(t.covered.all()):
                missing = (~t.covered).nonzero().reshape(-1).tolist()
                raise ValueError(
                    f"heldout: {len(missing)} of the {t.covered.numel()} held-out stimulus ids are "
                    f"not covered by {where} target {name!r} (e.g. "
                    f"{_id_at(self.spec.stimulus_ids, missing[0])!r}); held-out RSA needs every "
                    "held-out stimulus in the RDMs it is scored against"
                )
            keep = upper_tri(t.pair_mask.to(torch.uint8)).bool()
            if int(keep.sum()) < 3:
                raise ValueError(f"heldout: {where} target {name!r} has fewer than 3 valid pairs")
            out[name] = (upper_tri(t.rdm.double())[keep], keep)
        return out

    @torch.no_grad()
    def scores(self, model: nn.Module, bn: Any = None, chunk: int = 256) -> dict[str, float]:
        """``{column: score}`` for the current student (eval mode; the mode is restored)."""
        was = model.training
        model.eval()
        feats: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        taps = LayerTaps(model, self.layers, reduction="flatten")
        try:
            with bn.brain_mode() if bn is not None else _null():
                for start in range(0, self.images.shape[0], chunk):
                    taps.activations.clear()
                    model(self.images[start : start + chunk].to(self.device))
                    for layer in self.layers:
                        feats[layer].append(taps.activations[layer].float())
        finally:
            taps.close()
            model.train(was)
        rdms = {}
        for layer in self.layers:
            try:
                rdms[layer] = upper_tri(pairwise_rdm(torch.cat(feats[layer]).double(),
                                                     self.distance)).cpu()  # fmt: skip
            except ValueError as err:  # e.g. dead units: the correlation RDM is undefined
                rdms[layer] = None
                if not self._warned:
                    warnings.warn(f"heldout: layer {layer!r} has no RDM ({err}); its scores are "
                                  "NaN", UserWarning, stacklevel=3)  # fmt: skip
                    self._warned = True
        out = {}
        for column, layer, target, keep in self.jobs:
            method = column.split("/")[0].removeprefix("heldout_")
            method = "corr" if method == "rsa" else method
            student = rdms[layer]
            if student is None:
                out[column] = float("nan")
                continue
            value = compare(student[keep.cpu()][None], target.cpu()[None], method=method)
            out[column] = float(value.reshape(-1)[0])
        return out


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[Any], task_loss: Callable[..., torch.Tensor], device: Any,
    unpack: Callable[[Any, Any], tuple[torch.Tensor, Any, Any]] | None = None,
) -> dict[str, float]:  # fmt: skip
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
        if unpack is not None:
            x, y, _ = unpack(batch, device)
        else:
            x, y = batch[0].to(device), batch[1].to(device)
        out = model(x)
        total += float(task_loss(out.float(), y)) * y.shape[0]
        correct += float((out.argmax(1) == y).sum())
        seen += y.shape[0]
    model.train(was)
    return {"val_loss": total / seen, "val_accuracy": correct / seen}


def _id_at(ids: Any, i: int) -> Any:
    value = ids[i]
    return value.item() if isinstance(value, torch.Tensor) else value


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()
