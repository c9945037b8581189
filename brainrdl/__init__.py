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
    "BrainBatches": "brainrdl.train.brain_batches",
    "Heldout": "brainrdl.train.monitor",
    "NonFiniteLossError": "brainrdl.train.guards",
    "TrainingDivergedError": "brainrdl.train.guards",
    "OuterAutocastError": "brainrdl.train.precision",
    "CheckpointError": "brainrdl.train.checkpoint",
    # analysis
    "extract_rdms": "brainrdl.analysis.layer_rdms",
    "compare_layers": "brainrdl.analysis.layer_comparison",
    "noise_ceiling": "brainrdl.stats.ceilings",
    # bring your own model: loading by spec, default layers, stimulus sets
    "load_model": "brainrdl.nets.loading",
    "list_layers": "brainrdl.nets.layers",
    "StimulusSet": "brainrdl.analysis.stimuli",
    "compare_layers_over_time": "brainrdl.analysis.temporal",
    "plot_layers_over_time": "brainrdl.analysis.temporal",
    # named errors
    "BrainrdlError": "brainrdl.errors",
    "InvalidArgumentError": "brainrdl.errors",
    "InvalidTypeError": "brainrdl.errors",
    "DegenerateDataError": "brainrdl.errors",
    "DataFileError": "brainrdl.errors",
    "DataFileNotFoundError": "brainrdl.errors",
    # real data and stimulus splits
    "load_kriegeskorte2008": "brainrdl.datasets.kriegeskorte2008",
    "kfold_stimuli": "brainrdl.datasets.splits",
    "split_stimuli": "brainrdl.datasets.splits",
    "searchlight_map": "brainrdl.analysis.searchlight",
    "group_searchlight": "brainrdl.analysis.searchlight",
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
    "BrainBatches",
    "BrainTeacher",
    "BrainrdlError",
    "CKALoss",
    "CheckpointError",
    "DataFileError",
    "DataFileNotFoundError",
    "DegenerateDataError",
    "Heldout",
    "InvalidArgumentError",
    "InvalidTypeError",
    "KDLoss",
    "KnowledgeProjection",
    "LayerTaps",
    "NetworkTeacher",
    "NonFiniteLossError",
    "OuterAutocastError",
    "PKTLoss",
    "RDLLoss",
    "StimulusSet",
    "Teacher",
    "TrainingDivergedError",
    "__version__",
    "calc_rdm",
    "cka",
    "compare",
    "compare_layers",
    "compare_layers_over_time",
    "compare_models",
    "compare_vectors",
    "extract_rdms",
    "fit",
    "group_searchlight",
    "kfold_stimuli",
    "list_layers",
    "load_kriegeskorte2008",
    "load_model",
    "noise_ceiling",
    "pairwise_rdm",
    "plot_layers_over_time",
    "procrustes_distance",
    "rank_transform",
    "ridge_encoding",
    "searchlight_map",
    "split_stimuli",
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
    from brainrdl.analysis.searchlight import group_searchlight, searchlight_map
    from brainrdl.analysis.stimuli import StimulusSet
    from brainrdl.analysis.temporal import compare_layers_over_time, plot_layers_over_time
    from brainrdl.datasets.kriegeskorte2008 import load_kriegeskorte2008
    from brainrdl.datasets.splits import kfold_stimuli, split_stimuli
    from brainrdl.errors import (
        BrainrdlError,
        DataFileError,
        DataFileNotFoundError,
        DegenerateDataError,
        InvalidArgumentError,
        InvalidTypeError,
    )
    from brainrdl.nets.layers import list_layers
    from brainrdl.nets.loading import load_model
    from brainrdl.nets.taps import LayerTaps
    from brainrdl.rsa.comparison import compare, compare_vectors
    from brainrdl.rsa.distances import pairwise_rdm, square_from_upper_tri, upper_tri
    from brainrdl.rsa.ranks import rank_transform
    from brainrdl.rsa.rdm import calc_rdm
    from brainrdl.stats.ceilings import noise_ceiling
    from brainrdl.stats.cka import cka
    from brainrdl.stats.encoding import ridge_encoding
    from brainrdl.stats.procrustes import procrustes_distance
    from brainrdl.train.brain_batches import BrainBatches
    from brainrdl.train.checkpoint import CheckpointError
    from brainrdl.train.guards import NonFiniteLossError, TrainingDivergedError
    from brainrdl.train.loop import fit
    from brainrdl.train.losses import CKALoss, KDLoss, KnowledgeProjection, PKTLoss, RDLLoss
    from brainrdl.train.monitor import Heldout
    from brainrdl.train.precision import OuterAutocastError
    from brainrdl.train.teachers import BrainTeacher, NetworkTeacher, Teacher
