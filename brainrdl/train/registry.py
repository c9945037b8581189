"""Alignment losses by name, and the one way the training step calls any of them.

``make_loss("rdl")`` builds :class:`~brainrdl.train.losses.RDLLoss` with its defaults;
``make_loss("rdl", comparison="paper")`` the paper form; ``"pkt"``, ``"cka"``, ``"kd"`` and
``"kp"`` the other transfer losses. Options are the loss class's keyword arguments.

Every alignment loss declares what it consumes in a class attribute ``consumes`` (one of
:data:`CONVENTIONS`), and :func:`call_loss` calls it with that and nothing else: the training
step never inspects a loss's signature or guesses its kind from its attributes. A loss of your
own joins by declaring ``consumes`` and accepting the arguments its convention lists.

Examples
--------
>>> loss = make_loss("rdl", comparison="pearson")
>>> type(loss).__name__, loss.comparison, loss.consumes
('RDLLoss', 'pearson', 'rdm')
>>> sorted(LOSSES)
['cka', 'kd', 'kp', 'pkt', 'rdl']
>>> {name: cls.consumes for name, cls in sorted(LOSSES.items())}
{'cka': 'features_or_rdm', 'kd': 'logits', 'kp': 'maps', 'pkt': 'features', 'rdl': 'rdm'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from brainrdl.train import functional as BF
from brainrdl.train.losses import CKALoss, KDLoss, KnowledgeProjection, PKTLoss, RDLLoss
from brainrdl.train.teachers import Target

__all__ = [
    "CONVENTIONS",
    "LOSSES",
    "RDL_COMPARISONS",
    "RDL_DISTANCES",
    "call_loss",
    "consumes",
    "make_loss",
]

#: name -> loss class
LOSSES: dict[str, type[nn.Module]] = {
    "rdl": RDLLoss,
    "pkt": PKTLoss,
    "cka": CKALoss,
    "kd": KDLoss,
    "kp": KnowledgeProjection,
}
#: the comparisons and distances ``RDLLoss`` accepts (one source for the CLI and configs)
RDL_COMPARISONS: tuple[str, ...] = BF.RDL_COMPARISONS
RDL_DISTANCES: tuple[str, ...] = BF.RDL_DISTANCES

#: what a loss may consume -> how :func:`call_loss` calls it (student first, always)
CONVENTIONS: dict[str, str] = {
    "rdm": "loss(student, target_rdm (B, B), pair_mask (B, B) bool)",
    "features": "loss(student, teacher_features (B, D), item_mask (B,) bool | None)",
    "logits": "loss(student_logits, teacher_logits (B, C), item_mask (B,) bool | None)",
    "maps": (
        "loss(student_maps, teacher_maps (B, C, ...), item_mask (B,) bool | None): the "
        "teacher's unreduced maps, or its reduced features when the student's are (B, C)"
    ),
    "features_or_rdm": (
        "loss(student, teacher_features | None, target_rdm=None | (B, B), item_mask=...): "
        "the teacher's features when it has some (a network), else its RDM (a brain)"
    ),
}


def make_loss(name: str, **options: Any) -> nn.Module:
    """Build the alignment loss registered as ``name`` with keyword ``options``.

    Raises
    ------
    ValueError
        When ``name`` is not registered (the message lists the names).

    Examples
    --------
    >>> make_loss("kd", temperature=2.0).temperature
    2.0
    """
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not registered; expected one of {sorted(LOSSES)}")
    return LOSSES[name](**options)


def consumes(loss: Any, where: str = "loss") -> str:
    """The declared ``consumes`` of ``loss`` (a loss object or class), checked once.

    Raises
    ------
    TypeError
        When ``loss`` declares nothing or something outside :data:`CONVENTIONS`.

    Examples
    --------
    >>> consumes(RDLLoss()), consumes(PKTLoss)
    ('rdm', 'features')
    """
    kind = getattr(loss, "consumes", None)
    if kind not in CONVENTIONS:
        raise TypeError(
            f"{where}: {type(loss).__name__ if not isinstance(loss, type) else loss.__name__} "
            f"declares consumes={kind!r}; an alignment loss must declare what it consumes, a "
            f"class attribute consumes = one of {sorted(CONVENTIONS)} (see "
            "brainrdl.train.registry.CONVENTIONS for how each kind is called)"
        )
    return kind


def call_loss(
    loss: Callable[..., torch.Tensor], kind: str, student: torch.Tensor, target: Target
) -> torch.Tensor:
    """Call ``loss`` on ``student`` and a teacher's ``target`` by its declared ``kind``.

    Parameters
    ----------
    loss : Callable[..., torch.Tensor]
        The loss (an ``nn.Module`` or any callable declaring ``consumes``).
    kind : str
        ``consumes(loss)``, resolved once before training.
    student : torch.Tensor
        Student activations of the batch (B, ...).
    target : Target
        The teacher's :class:`~brainrdl.train.teachers.Target` for the batch.

    Raises
    ------
    TypeError
        When the teacher does not provide what the loss consumes (features from a brain).

    Examples
    --------
    >>> import torch
    >>> from brainrdl.rsa.distances import pairwise_rdm
    >>> x = torch.randn(6, 4)
    >>> t = Target(pairwise_rdm(x), ~torch.eye(6, dtype=torch.bool), features=x)
    >>> float(call_loss(RDLLoss(comparison="paper"), "rdm", x, t)) < 1e-10
    True
    >>> float(call_loss(PKTLoss(), "features", x, t))
    0.0
    """
    if kind == "rdm":
        return loss(student, target.rdm, target.pair_mask)
    if kind == "features_or_rdm":
        if target.features is not None:
            return loss(student, target.features, target_rdm=None, item_mask=target.covered)
        return loss(student, None, target_rdm=target.rdm, item_mask=target.covered)
    teacher = target.features
    if kind == "maps" and (student.ndim > 2 or target.features is None):
        teacher = target.maps  # the student keeps its maps: so does the teacher
    if teacher is None:
        raise TypeError(
            f"{type(loss).__name__} consumes teacher {kind}, but the teacher gives only RDMs "
            "(a brain teacher); use an RDM loss (RDLLoss) or CKALoss"
        )
    return loss(student, teacher, target.covered)
