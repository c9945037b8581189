"""Alignment losses by name: the one list the CLI and the config runner read.

``make_loss("rdl")`` builds :class:`~brainrdl.train.losses.RDLLoss` with its defaults;
``make_loss("rdl", comparison="paper")`` the paper form; ``"pkt"``, ``"cka"``, ``"kd"`` and
``"kp"`` the other transfer losses. Options are the loss class's keyword arguments.

Examples
--------
>>> loss = make_loss("rdl", comparison="pearson")
>>> type(loss).__name__, loss.comparison
('RDLLoss', 'pearson')
>>> sorted(LOSSES)
['cka', 'kd', 'kp', 'pkt', 'rdl']
"""

from __future__ import annotations

from typing import Any

from torch import nn

from brainrdl.train import functional as BF
from brainrdl.train.losses import CKALoss, KDLoss, KnowledgeProjection, PKTLoss, RDLLoss

__all__ = ["LOSSES", "RDL_COMPARISONS", "RDL_DISTANCES", "make_loss"]

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


def make_loss(name: str, **options: Any) -> nn.Module:
    """Build the alignment loss registered as ``name`` with keyword ``options``.

    Raises
    ------
    ValueError
        When ``name`` is not registered (the message lists the names).
    """
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not registered; expected one of {sorted(LOSSES)}")
    return LOSSES[name](**options)
