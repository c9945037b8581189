"""brainrdl: representational distance learning toward brains and networks.

The public names are imported lazily so that ``import brainrdl`` stays cheap and a
missing optional piece never breaks the rest.

Examples
--------
>>> import torch, brainrdl
>>> rdm = brainrdl.calc_rdm(torch.randn(5, 20), method="correlation")
>>> tuple(rdm.shape)
(5, 5)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # RDM engine
    "calc_rdm": "brainrdl.rdm",
    "pairwise_rdm": "brainrdl.distances",
    "upper_tri": "brainrdl.distances",
    "square_from_upper_tri": "brainrdl.distances",
    # comparisons
    "compare": "brainrdl.comparison",
    "compare_vectors": "brainrdl.comparison",
    "rank_transform": "brainrdl.ranks",
    "compare_models": "brainrdl.layer_comparison",
    # teachers, taps, losses, training
    "Teacher": "brainrdl.teachers",
    "BrainTeacher": "brainrdl.teachers",
    "NetworkTeacher": "brainrdl.teachers",
    "LayerTaps": "brainrdl.taps",
    "RDLLoss": "brainrdl.losses",
    "PKTLoss": "brainrdl.losses",
    "KnowledgeProjection": "brainrdl.losses",
    "CKALoss": "brainrdl.losses",
    "KDLoss": "brainrdl.losses",
    "fit": "brainrdl.training",
    # analysis
    "extract_rdms": "brainrdl.layer_rdms",
    "compare_layers": "brainrdl.layer_comparison",
    "noise_ceiling": "brainrdl.ceilings",
}

__all__ = [
    "BrainTeacher",
    "CKALoss",
    "KDLoss",
    "KnowledgeProjection",
    "LayerTaps",
    "NetworkTeacher",
    "PKTLoss",
    "RDLLoss",
    "Teacher",
    "__version__",
    "calc_rdm",
    "compare",
    "compare_layers",
    "compare_models",
    "compare_vectors",
    "extract_rdms",
    "fit",
    "noise_ceiling",
    "pairwise_rdm",
    "rank_transform",
    "square_from_upper_tri",
    "upper_tri",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        if name in {"functional", "plot", "cli"}:
            return importlib.import_module(f"brainrdl.{name}")
        raise AttributeError(f"module 'brainrdl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from brainrdl.ceilings import noise_ceiling
    from brainrdl.comparison import compare, compare_vectors
    from brainrdl.distances import pairwise_rdm, square_from_upper_tri, upper_tri
    from brainrdl.layer_comparison import compare_layers, compare_models
    from brainrdl.layer_rdms import extract_rdms
    from brainrdl.losses import CKALoss, KDLoss, KnowledgeProjection, PKTLoss, RDLLoss
    from brainrdl.ranks import rank_transform
    from brainrdl.rdm import calc_rdm
    from brainrdl.taps import LayerTaps
    from brainrdl.teachers import BrainTeacher, NetworkTeacher, Teacher
    from brainrdl.training import fit
