"""Alignment terms of the training helper: which layer meets which target, with which loss.

``alignment={"layer3": "IT", "fc": ("logits", 0.5, KDLoss(4.0))}`` pairs a student layer with a
teacher target, a weight and optionally its own loss. Each loss declares what it consumes
(``consumes``, see :mod:`brainrdl.train.registry`); it is read once, when the mapping is parsed,
and every step calls the loss the same way through :func:`alignment_value`, so the training
helper never asks which kind of teacher or loss it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from brainrdl.rsa.distances import pairwise_rdm, upper_tri
from brainrdl.train.distributed import all_gather_nograd, is_distributed
from brainrdl.train.registry import call_loss, consumes
from brainrdl.train.teachers import Target


@dataclass
class AlignmentPair:
    """One alignment term: student ``layer`` toward teacher ``target`` with ``weight``."""

    layer: str
    target: str
    weight: float
    loss: Callable[..., torch.Tensor]
    #: what the loss consumes (its declared ``consumes``), read once
    kind: str = field(default="rdm")


def parse_alignment(
    alignment: Mapping[str, Any], default_loss: Callable[..., torch.Tensor], target_names: list[str]
) -> list[AlignmentPair]:
    """Normalise the ``alignment`` mapping; unknown targets raise an error listing the valid ones.

    Values may be ``"target"``, ``("target", weight)`` or ``("target", weight, loss)``.

    Examples
    --------
    >>> from brainrdl.train.losses import RDLLoss
    >>> [(p.weight, p.kind) for p in parse_alignment({"fc": ("IT", 0.5)}, RDLLoss(), ["IT"])]
    [(0.5, 'rdm')]
    """
    if not isinstance(alignment, Mapping) or not alignment:
        raise ValueError(
            "alignment must be a non-empty dict {student_layer: target_name | (target, weight)"
            f" | (target, weight, loss)}}; got {alignment!r}"
        )
    pairs = []
    for layer, spec in alignment.items():
        if isinstance(spec, str):
            spec = (spec,)
        if not isinstance(spec, (tuple, list)) or not 1 <= len(spec) <= 3:
            raise ValueError(f"alignment[{layer!r}] must be a target name or tuple; got {spec!r}")
        target = spec[0]
        weight = float(spec[1]) if len(spec) > 1 else 1.0
        loss = spec[2] if len(spec) > 2 else default_loss
        if target not in target_names:
            raise KeyError(
                f"alignment[{layer!r}] names target {target!r}, which the teacher does not "
                f"provide; its targets: {target_names}"
            )
        if not 0 <= weight < float("inf"):
            raise ValueError(f"alignment[{layer!r}] weight must be finite and >= 0; got {weight}")
        kind = consumes(loss, f"alignment[{layer!r}]")
        pairs.append(AlignmentPair(str(layer), target, weight, loss, kind))
    return pairs


def is_projection(loss: Any) -> bool:
    """True for a loss that consumes the teacher's unreduced maps (a knowledge projection).

    Examples
    --------
    >>> from brainrdl.train.losses import KnowledgeProjection, RDLLoss
    >>> is_projection(KnowledgeProjection(4, 2)), is_projection(RDLLoss())
    (True, False)
    """
    return getattr(loss, "consumes", None) == "maps"


def alignment_value(pair: AlignmentPair, features: torch.Tensor, target: Target) -> torch.Tensor:
    """Unweighted value of one alignment term for student ``features`` and a ``target``.

    The loss is called by its declared kind (:func:`brainrdl.train.registry.call_loss`).

    Examples
    --------
    >>> import torch
    >>> from brainrdl.train.losses import RDLLoss
    >>> x = torch.randn(6, 4)
    >>> t = Target(pairwise_rdm(x), ~torch.eye(6, dtype=torch.bool))
    >>> pair = AlignmentPair("fc", "IT", 1.0, RDLLoss(comparison="paper"))
    >>> float(alignment_value(pair, x, t)) < 1e-10
    True
    """
    return call_loss(pair.loss, pair.kind, features, target)


def global_targets(
    teacher: Any,
    inputs: torch.Tensor,
    ids: Any,
    local: dict[str, Target],
    to_ids: Callable[[Any], Any] | None = None,
) -> dict[str, Target]:
    """Targets over the global batch of all processes (identity when not distributed).

    A target with features is rebuilt from the gathered features; one without (a brain RDM) is
    asked again with the gathered ids, which must then be a tensor (``to_ids`` maps gathered
    positions to stimulus ids).
    """
    if not is_distributed():
        return local
    out: dict[str, Target] = {}
    global_ids = None
    for name, t in local.items():
        if t.features is not None:
            feats = all_gather_nograd(t.features)
            maps = all_gather_nograd(t.maps) if t.maps is not None else None
            b = feats.shape[0]
            mask = ~torch.eye(b, dtype=torch.bool, device=feats.device)
            rdm = pairwise_rdm(feats.reshape(b, -1), t.distance or "euclidean")
            out[name] = Target(rdm, mask, feats, t.distance, maps=maps)
        else:
            if global_ids is None:
                if not isinstance(ids, torch.Tensor):
                    raise TypeError(
                        "under torch.distributed, stimulus ids must be an integer tensor (use "
                        "positions into the stimulus set) so they can be gathered"
                    )
                global_ids = all_gather_nograd(ids.to(inputs.device))
                # a stand-in with the global batch's length, device and dtype (no data)
                stand_in = inputs.new_empty((global_ids.shape[0], 0))
                all_targets = teacher.targets(
                    stand_in, to_ids(global_ids) if to_ids else global_ids
                )
            out[name] = all_targets[name]
    return out


def rsa_pearson(student_rdm: torch.Tensor, target: Target) -> float:
    """Pearson r between the upper triangles of a student RDM and a target, on valid pairs.

    Examples
    --------
    >>> import torch
    >>> d = pairwise_rdm(torch.randn(5, 3))
    >>> round(rsa_pearson(2 * d + 1, Target(d, torch.ones(5, 5, dtype=torch.bool))), 6)
    1.0
    """
    s = upper_tri(student_rdm.double())
    t = upper_tri(target.rdm.double())
    keep = upper_tri(target.pair_mask.to(torch.uint8)).bool()
    s, t = s[keep], t[keep]
    if s.numel() < 3:
        return float("nan")
    s, t = s - s.mean(), t - t.mean()
    denom = torch.linalg.vector_norm(s) * torch.linalg.vector_norm(t)
    return float((s * t).sum() / denom) if float(denom) > 0 else float("nan")
