"""BIDS datasets with fMRIPrep derivatives → per-subject ROI RDMs (through nilearn's BIDS support).

One call::

    rdms = rdms_from_bids("ds000XYZ", task="digits", atlas="atlas.nii.gz",
                          labels={"EVC": 1, "IT": 2})   # dict ROI -> RDMs, one RDM per subject

Modules: ``fmriprep`` (:func:`rdms_from_bids`, the file checks :func:`check_bids_subjects` and
the error :class:`BIDSDataError` that names the missing files).
"""

from data_adapters.bids.fmriprep import (
    MOTION_CONFOUNDS,
    BIDSDataError,
    BIDSRDMs,
    check_bids_subjects,
    rdms_from_bids,
)

__all__ = ["MOTION_CONFOUNDS", "BIDSDataError", "BIDSRDMs", "check_bids_subjects",
           "rdms_from_bids"]
