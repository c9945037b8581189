"""fMRI: beta images (or BOLD runs + events) and ROIs → rsatoolbox Datasets and RDMs.

The common case is one call::

    rdms = rdms_from_betas("sub-01_betas.nii", "sub-01_design.tsv", atlas="atlas.nii.gz",
                           labels={"EVC": 1, "IT": 2}, method="crossnobis")

Modules: ``betas`` (beta images → Datasets / RDMs per ROI), ``glm`` (BOLD + events → betas through
nilearn's first-level GLM), ``noise`` (noise precision from
residuals or repeated betas), ``rois`` (atlases, label tables, masks on the data grid), ``_io``
(file reading shared by the three).
"""

from data_adapters.fmri.betas import (
    calc_rdms,
    datasets_from_betas,
    extract_roi_voxels,
    rdms_from_betas,
)
from data_adapters.fmri.glm import (
    GLMResult,
    datasets_from_bold,
    first_level_glm,
    rdms_from_bold,
    read_events,
)
from data_adapters.fmri.noise import noise_from_measurements, precision_from_residuals
from data_adapters.fmri.rois import read_label_table, roi_masks
from data_adapters.fmri.searchlight import (
    merge_searchlight_shards,
    open_searchlight_rdms,
    read_searchlight_rdms,
    searchlight_neighbourhoods,
    searchlight_rdms,
)

__all__ = [
    "GLMResult",
    "calc_rdms",
    "datasets_from_betas",
    "datasets_from_bold",
    "extract_roi_voxels",
    "first_level_glm",
    "merge_searchlight_shards",
    "noise_from_measurements",
    "open_searchlight_rdms",
    "precision_from_residuals",
    "rdms_from_betas",
    "rdms_from_bold",
    "read_events",
    "read_label_table",
    "read_searchlight_rdms",
    "roi_masks",
    "searchlight_neighbourhoods",
    "searchlight_rdms",
]
