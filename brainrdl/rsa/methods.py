"""One source for every list of method names (RDM measures, comparisons, their subsets).

Every public function checks ``method`` against one of these tuples with
:func:`brainrdl.validation.check_choice`; internal calls trust it. Modules that published a
tuple before (``brainrdl.rsa.comparison.METHODS``...) keep the name as an alias of the one here.

Examples
--------
>>> from brainrdl.rsa.methods import COMPARISON_METHODS, RDM_TENSOR_METHODS
>>> "corr" in COMPARISON_METHODS and "correlation" in RDM_TENSOR_METHODS
True
"""

from __future__ import annotations

__all__ = [
    "COMPARISON_METHODS",
    "COV_COMPARISON_METHODS",
    "CV_RDM_METHODS",
    "DIFFERENTIABLE_COMPARISON_METHODS",
    "FAST_BOOTSTRAP_METHODS",
    "FMRI_RDM_METHODS",
    "LAYER_COMPARISON_METHODS",
    "LAYER_RDM_METHODS",
    "NOISE_CEILING_METHODS",
    "RDM_DATASET_METHODS",
    "RDM_TENSOR_METHODS",
    "SPIKE_RDM_METHODS",
]

# --- dissimilarity measures (calc_rdm)
#: measures of ``calc_rdm`` / ``pairwise_rdm`` on tensors
RDM_TENSOR_METHODS: tuple[str, ...] = (
    "euclidean", "correlation", "cosine", "mahalanobis", "poisson",
)  # fmt: skip
#: measures of ``calc_rdm`` on rsatoolbox Datasets (rsatoolbox's names)
RDM_DATASET_METHODS: tuple[str, ...] = (
    "euclidean", "correlation", "mahalanobis", "crossnobis", "poisson", "poisson_cv",
)  # fmt: skip
#: the cross-validated measures (need a descriptor and folds)
CV_RDM_METHODS: tuple[str, ...] = ("crossnobis", "poisson_cv")
#: measures of the fMRI adapter (``data_adapters.fmri.rdms_from_betas``)
FMRI_RDM_METHODS: tuple[str, ...] = (
    "euclidean", "correlation", "mahalanobis", "crossnobis", "poisson",
)  # fmt: skip
#: measures of the spike adapter (``data_adapters.ephys``)
SPIKE_RDM_METHODS: tuple[str, ...] = (
    "poisson", "poisson_cv", "crossnobis", "correlation", "euclidean",
)  # fmt: skip
#: measures of layer RDMs (``extract_rdms``) and of the RDL loss
LAYER_RDM_METHODS: tuple[str, ...] = ("correlation", "cosine", "euclidean")

# --- RDM comparisons (compare)
#: methods of ``compare`` / ``compare_vectors`` (rsatoolbox's names)
COMPARISON_METHODS: tuple[str, ...] = (
    "cosine", "corr", "spearman", "rho-a", "tau-a", "corr_cov", "cosine_cov",
)  # fmt: skip
#: the comparisons that carry a gradient
DIFFERENTIABLE_COMPARISON_METHODS: tuple[str, ...] = ("cosine", "corr", "corr_cov", "cosine_cov")
#: the comparisons that whiten with the covariance of the dissimilarities
COV_COMPARISON_METHODS: tuple[str, ...] = ("corr_cov", "cosine_cov")
#: methods of ``compare_layers`` / ``compare_models`` (``kendall`` is tau-b, through rsatoolbox)
LAYER_COMPARISON_METHODS: tuple[str, ...] = (*COMPARISON_METHODS[:5], "kendall",
                                             *COV_COMPARISON_METHODS)
#: comparisons with a batched bootstrap kernel
FAST_BOOTSTRAP_METHODS: tuple[str, ...] = ("cosine", "corr", "spearman", "rho-a")
#: methods whose RDMs rsatoolbox's ``pool_rdm`` knows how to pool and ``compare`` can compare
#: (noise ceilings; "euclid" is pooled but no comparison method, so it has no noise ceiling)
NOISE_CEILING_METHODS: tuple[str, ...] = (
    "cosine", "corr", "spearman", "rho-a", "tau-a", "kendall", "tau-b", "corr_cov", "cosine_cov",
    "neg_riem_dist",
)  # fmt: skip
