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
    "calc_rdm": "brainrdl.rsa.rdm",
    "pairwise_rdm": "brainrdl.rsa.distances",
    "upper_tri": "brainrdl.rsa.distances",
    "square_from_upper_tri": "brainrdl.rsa.distances",
    # comparisons
    "compare": "brainrdl.rsa.comparison",
    "compare_vectors": "brainrdl.rsa.comparison",
    "rank_transform": "brainrdl.rsa.ranks",
    "compare_models": "brainrdl.analysis.layer_comparison",
    # teachers, taps, losses, training
    "Teacher": "brainrdl.train.teachers",
    "BrainTeacher": "brainrdl.train.teachers",
    "NetworkTeacher": "brainrdl.train.teachers",
    "LayerTaps": "brainrdl.nets.taps",
    "RDLLoss": "brainrdl.train.losses",
    "PKTLoss": "brainrdl.train.losses",
    "KnowledgeProjection": "brainrdl.train.losses",
    "CKALoss": "brainrdl.train.losses",
    "KDLoss": "brainrdl.train.losses",
    "fit": "brainrdl.train.loop",
    # analysis
    "extract_rdms": "brainrdl.analysis.layer_rdms",
    "compare_layers": "brainrdl.analysis.layer_comparison",
    "noise_ceiling": "brainrdl.stats.ceilings",
    # pattern metrics (issue 15)
    "cka": "brainrdl.stats.cka",
    "ridge_encoding": "brainrdl.stats.encoding",
    "procrustes_distance": "brainrdl.stats.procrustes",
}

# rooms importable as attributes (``brainrdl.rsa``...); ``functional`` is the public loss module
_SUBPACKAGES = frozenset(
    {"analysis", "cli", "datasets", "functional", "nets", "rsa", "stats", "train"}
)

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
    "cka",
    "compare",
    "compare_layers",
    "compare_models",
    "compare_vectors",
    "extract_rdms",
    "fit",
    "noise_ceiling",
    "pairwise_rdm",
    "procrustes_distance",
    "rank_transform",
    "ridge_encoding",
    "square_from_upper_tri",
    "upper_tri",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        if name in _SUBPACKAGES:
            return importlib.import_module(f"brainrdl.{name}")
        raise AttributeError(f"module 'brainrdl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from brainrdl.analysis.layer_comparison import compare_layers, compare_models
    from brainrdl.analysis.layer_rdms import extract_rdms
    from brainrdl.nets.taps import LayerTaps
    from brainrdl.rsa.comparison import compare, compare_vectors
    from brainrdl.rsa.distances import pairwise_rdm, square_from_upper_tri, upper_tri
    from brainrdl.rsa.ranks import rank_transform
    from brainrdl.rsa.rdm import calc_rdm
    from brainrdl.stats.ceilings import noise_ceiling
    from brainrdl.stats.cka import cka
    from brainrdl.stats.encoding import ridge_encoding
    from brainrdl.stats.procrustes import procrustes_distance
    from brainrdl.train.loop import fit
    from brainrdl.train.losses import CKALoss, KDLoss, KnowledgeProjection, PKTLoss, RDLLoss
    from brainrdl.train.teachers import BrainTeacher, NetworkTeacher, Teacher
