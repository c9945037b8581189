"""Alignment terms of the training helper: which layer meets which target, with which loss.

``alignment={"layer3": "IT", "fc": ("logits", 0.5, KDLoss(4.0))}`` pairs a student layer with a
teacher target, a weight and optionally its own loss. One dispatch (:func:`alignment_value`) calls
any brainrdl loss with what a :class:`brainrdl.train.teachers.Target` holds, so the training helper
never asks which kind of teacher it has: RDM losses get the target RDM and pair mask; feature losses
(PKT, KP, KD) get the teacher's features; CKA gets features when there are some, else the RDM.
A knowledge projection (KP) whose student activation keeps its shape (B, C, H, W) gets the
teacher's unreduced maps (``Target.maps``) instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from brainrdl.rsa.distances import pairwise_rdm, upper_tri
from brainrdl.train.distributed import all_gather_nograd, is_distributed
from brainrdl.train.losses import KnowledgeProjection
from brainrdl.train.teachers import Target


@dataclass
class AlignmentPair:
    """One alignment term: student ``layer`` toward teacher ``target`` with ``weight``."""

    layer: str
    target: str
    weight: float
    loss: Callable[..., torch.Tensor]


def parse_alignment(
    alignment: Mapping[str, Any], default_loss: Callable[..., torch.Tensor], target_names: list[str]
) -> list[AlignmentPair]:
    """Normalise the ``alignment`` mapping; unknown targets raise an error listing the valid ones.

    Values may be ``"target"``, ``("target", weight)`` or ``("target", weight, loss)``.

    Examples
    --------
    >>> [p.weight for p in parse_alignment({"fc": ("IT", 0.5)}, lambda *a: 0, ["IT"])]
    [0.5]
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
        if not weight >= 0:
            raise ValueError(f"alignment[{layer!r}] weight must be >= 0; got {weight}")
        pairs.append(AlignmentPair(str(layer), target, weight, loss))
    return pairs


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        return name in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def is_projection(loss: Any) -> bool:
    """True for a :class:`brainrdl.train.losses.KnowledgeProjection` (a loss with parameters).

    Examples
    --------
    >>> from brainrdl.train.losses import KnowledgeProjection, RDLLoss
    >>> is_projection(KnowledgeProjection(4, 2)), is_projection(RDLLoss())
    (True, False)
    """
    return isinstance(loss, KnowledgeProjection)


def alignment_value(
    loss: Callable[..., torch.Tensor], features: torch.Tensor, target: Target, name: str
) -> torch.Tensor:
    """Value of one alignment term for student ``features`` (B, D) and a ``target``.

    A :class:`brainrdl.train.losses.KnowledgeProjection` given student ``features`` of more than two
    dims (reduction ``"none"``) is compared with the teacher's unreduced ``target.maps``.

    Examples
    --------
    >>> import torch
    >>> from brainrdl.train.losses import RDLLoss
    >>> x = torch.randn(6, 4)
    >>> t = Target(pairwise_rdm(x), ~torch.eye(6, dtype=torch.bool))
    >>> float(alignment_value(RDLLoss(comparison="paper"), x, t, "fc")) < 1e-10
    True
    """
    if hasattr(loss, "comparison") and hasattr(loss, "distance"):  # RDM-to-RDM loss (RDLLoss)
        return loss({name: features}, {name: target.rdm}, {name: target.pair_mask})
    items = target.pair_mask.any(dim=1)
    kwargs: dict[str, Any] = {}
    if _accepts(loss, "name"):
        kwargs["name"] = name
    if _accepts(loss, "item_mask") and not bool(items.all()):
        kwargs["item_mask"] = items
    if target.features is not None:
        teacher_feats = target.features
        if is_projection(loss) and features.ndim > 2 and target.maps is not None:
            teacher_feats = target.maps
        return loss(features, teacher_feats, **kwargs)
    if _accepts(loss, "target_rdm"):
        return loss(features, target_rdm=target.rdm, **kwargs)
    raise TypeError(
        f"alignment of {name!r}: {type(loss).__name__} needs teacher features, but the teacher "
        "gives only RDMs (a brain teacher); use RDLLoss or CKALoss"
    )


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
