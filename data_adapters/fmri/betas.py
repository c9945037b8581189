"""fMRI adapter: beta images (or BOLD runs + events) and ROIs → rsatoolbox Datasets and RDMs.

The common case is one call::

    rdms = rdms_from_betas("sub-01_betas.nii", "sub-01_design.tsv", atlas="atlas.nii.gz",
                           labels={"EVC": 1, "IT": 2}, method="crossnobis")

built from smaller public pieces: :func:`roi_masks` (ROIs on the data grid),
:func:`extract_roi_voxels` (voxel values per ROI, streaming the 4D file),
:func:`datasets_from_betas` (one ``rsatoolbox.data.Dataset`` per ROI: voxels are channels, obs
descriptors ``stimulus``, ``conds``, ``run``; descriptors ``roi``, ``subject``) and
:func:`calc_rdms` (one RDM per ROI). The GLM path (:func:`datasets_from_bold`,
:func:`rdms_from_bold`) lives in ``fmri_glm`` and is re-exported here.

Examples
--------
>>> import tempfile
>>> from data_adapters.demo.study import make_demo_study
>>> s = make_demo_study(tempfile.mkdtemp(), n_stimuli=20, n_runs=3, with_bold=False,
...                     with_nwb=False)
>>> rdms = rdms_from_betas(s.betas[0], s.design[0], atlas=s.atlas, labels=s.atlas_labels,
...                        method="crossnobis")
>>> sorted(rdms), rdms["IT"].n_cond
(['EVC', 'IT'], 20)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from brainrdl.errors import InvalidArgumentError
from brainrdl.rsa.methods import FMRI_RDM_METHODS
from brainrdl.validation import check_choice
from data_adapters.fmri._io import ImageLike, VolumeSource, volume_labels
from data_adapters.fmri.noise import noise_from_measurements
from data_adapters.fmri.rois import roi_masks

__all__ = [
    "calc_rdms",
    "datasets_from_betas",
    "extract_roi_voxels",
    "rdms_from_betas",
]

_METHODS = FMRI_RDM_METHODS  # the one list: brainrdl.rsa.methods


def extract_roi_voxels(
    betas: ImageLike | Sequence[ImageLike],
    masks: Mapping[str, np.ndarray],
    *,
    progress: bool = False,
    source: VolumeSource | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Voxel values of each ROI over all volumes, dropping NaN or constant voxels.

    The 4D image is read a chunk of volumes at a time, so memory stays near the size of the
    ROI data, not of the whole image. A voxel that is NaN/infinite in any volume, or takes the
    same value in every volume, is dropped with a warning that counts them per ROI.

    Parameters
    ----------
    betas : path, image, or list of 3D paths/images
        A 4D image or several 3D images on one grid.
    masks : dict
        ROI name -> boolean array on the grid of ``betas`` (see :func:`roi_masks`).
    progress : bool, default False
        Show a tqdm bar over chunks of volumes.
    source : VolumeSource, optional
        An already opened ``betas`` (internal reuse).

    Returns
    -------
    dict
        ROI name -> ``(values (n_volumes, n_voxels), voxel_ijk (n_voxels, 3))``.

    Raises
    ------
    ValueError
        If a mask is not on the grid or an ROI has no usable voxel left (names the ROI).

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> img = nib.Nifti1Image(np.arange(24.0).reshape(1, 2, 2, 6), np.eye(4))
    >>> vals, ijk = extract_roi_voxels(img, {"r": np.array([[[True, False], [False, True]]])})["r"]
    >>> vals.shape, ijk.tolist()
    ((6, 2), [[0, 0, 0], [0, 1, 1]])
    """
    src = source if source is not None else VolumeSource(betas, "betas")
    for name, mask in masks.items():
        if np.shape(mask) != src.shape:
            raise InvalidArgumentError(
                f"mask of ROI {name!r} has shape {np.shape(mask)}; expected the "
                             f"data grid {src.shape}")
    union = np.zeros(src.shape, dtype=bool)
    for mask in masks.values():
        union |= np.asarray(mask, dtype=bool)
    flat = np.flatnonzero(union)
    values = np.empty((src.n_volumes, flat.size), dtype=np.float64)
    chunks = src.iter_chunks(flat)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="reading volumes", unit="chunk", leave=False)
    for start, block in chunks:
        values[start : start + block.shape[0]] = block
    # position of each grid voxel within `flat`
    position = np.full(union.size, -1, dtype=np.int64)
    position[flat] = np.arange(flat.size)
    finite = np.isfinite(values).all(axis=0)
    # (a NaN compares unequal, but such voxels are already excluded as non-finite)
    varying = (values != values[:1]).any(axis=0)
    usable = finite & varying
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, mask in masks.items():
        idx = position[np.flatnonzero(mask)]
        n_bad_nan = int((~finite[idx]).sum())
        n_const = int((finite[idx] & ~varying[idx]).sum())
        if n_bad_nan or n_const:
            warnings.warn(
                f"ROI {name!r}: excluded {n_bad_nan + n_const} of {idx.size} voxels "
                f"({n_bad_nan} NaN/infinite in some volume, {n_const} constant over volumes)",
                UserWarning,
                stacklevel=2,
            )
        keep = idx[usable[idx]]
        if keep.size == 0:
            raise InvalidArgumentError(
                f"ROI {name!r} is empty: none of its {idx.size} voxels has finite, varying values"
            )
        ijk = np.stack(np.unravel_index(flat[keep], src.shape), axis=1)
        out[name] = (values[:, keep], ijk)
    return out


def datasets_from_betas(
    betas: ImageLike | Sequence[ImageLike],
    conditions: Any,
    runs: Any = None,
    *,
    atlas: ImageLike | None = None,
    labels: Mapping[str, Any] | str | os.PathLike | None = None,
    masks: ImageLike | Mapping[str, ImageLike] | None = None,
    subject: str | None = None,
    resample: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """One rsatoolbox Dataset per ROI from beta images; each ROI keeps its voxels as channels.

    Parameters
    ----------
    betas : path, image, or list of 3D paths/images
        A 4D image (one volume per beta) or a list of 3D images.
    conditions : array-like or path
        Condition (stimulus) label per volume, or a TSV with a ``condition`` / ``stimulus`` /
        ``trial_type`` column and optionally a ``run`` column.
    runs : array-like, optional
        Run label per volume (default: the TSV's ``run`` column, else none).
    atlas, labels, masks, resample
        ROI definition, see :func:`roi_masks`.
    subject : str, optional
        Stored as the ``subject`` descriptor (default ``"sub-01"``).
    progress : bool, default False
        Show a tqdm bar while reading volumes.

    Returns
    -------
    dict
        ROI name -> ``rsatoolbox.data.Dataset`` with obs descriptors ``stimulus``, ``conds``
        (same labels) and ``run`` (when known), channel descriptors ``i``, ``j``, ``k`` (voxel
        indices) and descriptors ``roi``, ``subject``.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(2, 2, 2, 4)), np.eye(4))
    >>> ds = datasets_from_betas(img, ["a", "b", "a", "b"], [1, 1, 2, 2],
    ...                          masks={"all": np.ones((2, 2, 2))})["all"]
    >>> ds.n_obs, ds.n_channel, ds.descriptors["roi"]
    (4, 8, 'all')
    """
    from rsatoolbox.data import Dataset

    src = VolumeSource(betas, "betas")
    cond, run = volume_labels(conditions, runs, src.n_volumes)
    rois = roi_masks(
        src.shape, src.affine, atlas=atlas, labels=labels, masks=masks,
        resample=resample,
    )  # fmt: skip
    voxels = extract_roi_voxels(None, rois, progress=progress, source=src)
    out = {}
    for name, (values, ijk) in voxels.items():
        obs = {"stimulus": cond, "conds": cond}
        if run is not None:
            obs["run"] = run
        out[name] = Dataset(
            values,
            descriptors={"roi": name, "subject": subject or "sub-01"},
            obs_descriptors=obs,
            channel_descriptors={"i": ijk[:, 0], "j": ijk[:, 1], "k": ijk[:, 2]},
        )
    return out


def calc_rdms(
    datasets: Mapping[str, Any],
    method: str = "correlation",
    *,
    noise: Any = None,
    descriptor: str = "stimulus",
    cv_descriptor: str | None = "run",
) -> dict[str, Any]:
    """One RDM per ROI from :func:`datasets_from_betas`-style Datasets.

    Parameters
    ----------
    datasets : dict
        ROI name -> rsatoolbox Dataset.
    method : str, default "correlation"
        One of euclidean, correlation, mahalanobis, crossnobis, poisson.
    noise : None, "shrinkage", array or dict, optional
        Noise precision for mahalanobis/crossnobis: None (identity), ``"shrinkage"`` (estimated
        per ROI with :func:`noise_from_measurements`), one matrix per ROI in a dict, or one
        matrix for all ROIs.
    descriptor : str, default "stimulus"
        Obs descriptor defining the RDM conditions (sorted unique labels).
    cv_descriptor : str, default "run"
        Cross-validation folds for crossnobis (the runs).

    Examples
    --------
    >>> import numpy as np
    >>> from rsatoolbox.data import Dataset
    >>> obs = {"stimulus": np.tile([0, 1, 2], 2), "run": np.repeat([1, 2], 3)}
    >>> ds = Dataset(np.random.default_rng(0).normal(size=(6, 4)), obs_descriptors=obs)
    >>> calc_rdms({"r": ds}, "crossnobis")["r"].n_cond
    3
    """
    # brainrdl's engine, never rsatoolbox's: a broken import must fail loudly
    from brainrdl.rsa.rdm import calc_rdm

    check_choice("method", method, _METHODS)
    out = {}
    for name, ds in datasets.items():
        kwargs: dict[str, Any] = {"method": method, "descriptor": descriptor}
        if method in ("mahalanobis", "crossnobis"):
            kwargs["noise"] = _noise_for(noise, name, ds, descriptor)
        elif noise is not None:
            raise InvalidArgumentError(
                f"noise is only used by mahalanobis and crossnobis, not {method!r}")
        if method == "crossnobis":
            if cv_descriptor not in ds.obs_descriptors:
                raise InvalidArgumentError(
                    f"crossnobis needs run labels (cv_descriptor={cv_descriptor!r}) for ROI "
                    f"{name!r}; pass runs= or a design TSV with a 'run' column"
                )
            if len(np.unique(ds.obs_descriptors[cv_descriptor])) < 2:
                raise InvalidArgumentError(
                    f"crossnobis needs at least 2 runs; ROI {name!r} has one")
            kwargs["cv_descriptor"] = cv_descriptor
        rdm = calc_rdm(ds, **kwargs)
        for key in ("roi", "subject"):
            if key in ds.descriptors:
                rdm.rdm_descriptors[key] = [ds.descriptors[key]]
        out[name] = rdm
    return out


def _noise_for(noise: Any, name: str, ds: Any, descriptor: str) -> Any:
    if noise is None:
        return None
    if isinstance(noise, str):
        if noise != "shrinkage":
            raise InvalidArgumentError(
                f"noise={noise!r} is not supported; expected None, 'shrinkage', "
                             "an array or a dict of arrays per ROI")
        return noise_from_measurements(ds, descriptor)
    if isinstance(noise, Mapping):
        if name not in noise:
            raise InvalidArgumentError(f"noise has no precision matrix for ROI {name!r}; it has "
                             f"{sorted(noise)}")
        noise = noise[name]
    noise = np.asarray(noise, dtype=float)
    if noise.shape != (ds.n_channel, ds.n_channel):
        raise InvalidArgumentError(
            f"noise for ROI {name!r} must be ({ds.n_channel}, {ds.n_channel}) (its "
                         f"voxel count after exclusions); got {noise.shape}")
    return noise


def rdms_from_betas(
    betas: ImageLike | Sequence[ImageLike],
    conditions: Any,
    runs: Any = None,
    *,
    atlas: ImageLike | None = None,
    labels: Mapping[str, Any] | str | os.PathLike | None = None,
    masks: ImageLike | Mapping[str, ImageLike] | None = None,
    method: str = "correlation",
    noise: Any = None,
    subject: str | None = None,
    resample: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """From beta images and ROIs to one rsatoolbox RDM per ROI, in one call.

    The RDM conditions are the sorted unique ``conditions``; for crossnobis the runs are the
    cross-validation folds (leave one run out). See :func:`datasets_from_betas` for the inputs
    and :func:`calc_rdms` for ``method`` and ``noise``.

    Returns
    -------
    dict
        ROI name -> ``rsatoolbox.rdm.RDMs`` (rdm descriptors ``roi``, ``subject``).

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(2, 2, 2, 6)), np.eye(4))
    >>> rdms = rdms_from_betas(img, list("abcabc"), [1, 1, 1, 2, 2, 2],
    ...                        masks={"all": np.ones((2, 2, 2))}, method="crossnobis")
    >>> rdm = rdms["all"]
    >>> rdm.dissimilarity_measure, [str(c) for c in rdm.pattern_descriptors["stimulus"]]
    ('crossnobis', ['a', 'b', 'c'])
    """
    check_choice("method", method, _METHODS)
    datasets = datasets_from_betas(
        betas, conditions, runs, atlas=atlas, labels=labels, masks=masks, subject=subject,
        resample=resample, progress=progress,
    )  # fmt: skip
    return calc_rdms(datasets, method, noise=noise)
