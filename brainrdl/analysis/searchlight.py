"""Model → brain maps from searchlight RDMs, and their group statistics.

:func:`searchlight_map` compares model RDMs (one per layer, or any named RDMs) with the RDM of
every searchlight centre and writes the comparison value at the centre into a NIfTI image. Across
subjects, :func:`group_searchlight` gives one-sample t-maps with a sign-flip permutation test that
controls the family-wise error over voxels by the maximum statistic, and
:func:`searchlight_noise_ceiling` the noise ceiling at each centre. :func:`plot_searchlight` draws
a map through ``nilearn.plotting`` with a named colour bar.

Searchlight RDMs come from ``data_adapters.fmri.searchlight_rdms`` (an rsatoolbox ``RDMs`` with a
``voxel_index`` rdm descriptor, or its HDF5 file opened lazily); this module only needs arrays
and a mask image.

Examples
--------
>>> import numpy as np, nibabel as nib, rsatoolbox
>>> mask = nib.Nifti1Image(np.ones((2, 2, 2), np.int8), np.eye(4))
>>> data = rsatoolbox.rdm.RDMs(np.random.default_rng(0).random((8, 6)),
...                            rdm_descriptors={"voxel_index": np.arange(8)})
>>> img = searchlight_map(np.random.default_rng(1).random(6), data, mask_img=mask)
>>> img.shape
(2, 2, 2)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brainrdl.rsa.comparison import compare_vectors
from brainrdl.rsa.ranks import rank_transform
from brainrdl.validation import check_choice

__all__ = [
    "CEILING_METHODS",
    "MAP_METHODS",
    "GroupSearchlight",
    "PermutationMap",
    "group_searchlight",
    "plot_searchlight",
    "searchlight_map",
    "searchlight_noise_ceiling",
    "searchlight_permutation_test",
    "searchlight_values",
]

#: Comparison methods of the maps (``brainrdl.compare`` names).
MAP_METHODS = ("corr", "cosine", "spearman", "rho-a", "tau-a", "corr_cov", "cosine_cov")
#: Methods of the per-centre noise ceiling (pooling as rsatoolbox's ``pool_rdm``).
CEILING_METHODS = ("corr", "cosine", "spearman", "rho-a")

_ROWS_PER_CHUNK = 4096  # searchlight RDMs compared per step


# ----------------------------------------------------------------------------- inputs


def _load_img(img: Any, name: str) -> Any:
    import nibabel as nib

    if isinstance(img, (str, os.PathLike)):
        if not os.path.exists(img):
            raise FileNotFoundError(f"{name}: no such file {str(img)!r}")
        return nib.load(img)
    if hasattr(img, "affine") and hasattr(img, "dataobj"):
        return img
    raise TypeError(f"{name} must be a path or a nibabel image; got {type(img).__name__}")


def _mask(mask_img: Any) -> tuple[np.ndarray, np.ndarray]:
    """(3D bool mask, affine) of ``mask_img``."""
    img = _load_img(mask_img, "mask_img")
    arr = np.asarray(img.dataobj)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"mask_img must be a 3D image; got shape {arr.shape}")
    return arr != 0, np.asarray(img.affine, dtype=float)


def _model_vectors(model_rdms: Any, n_cond: int, stimuli: np.ndarray | None):
    """(names, (M, P) float64 tensor, single) from the accepted model RDM inputs."""
    from rsatoolbox.rdm import RDMs

    if isinstance(model_rdms, Mapping):
        names, vecs = [], []
        for name, value in model_rdms.items():
            _, v, _ = _model_vectors(value, n_cond, stimuli)
            if v.shape[0] != 1:
                raise ValueError(f"model_rdms[{name!r}] holds {v.shape[0]} RDMs; expected one "
                                 "per name")
            names.append(str(name))
            vecs.append(v)
        if not vecs:
            raise ValueError("model_rdms is empty")
        return names, torch.cat(vecs), False
    if isinstance(model_rdms, RDMs):
        rdms = _aligned(model_rdms, stimuli)
        names = _rdm_names(rdms)
        return names, torch.as_tensor(rdms.get_vectors(), dtype=torch.float64), False
    if isinstance(model_rdms, (np.ndarray, torch.Tensor, list)):
        arr = torch.as_tensor(np.asarray(model_rdms, dtype=np.float64)
                              if not isinstance(model_rdms, torch.Tensor) else model_rdms)
        arr = arr.detach().to("cpu", torch.float64)
        if arr.ndim == 2 and arr.shape[0] == arr.shape[1] == n_cond:
            rows, cols = torch.triu_indices(n_cond, n_cond, offset=1)
            arr = arr[rows, cols]
        if arr.ndim != 1 or arr.numel() != n_cond * (n_cond - 1) // 2:
            raise ValueError(
                f"model_rdms: expected a square ({n_cond}, {n_cond}) RDM or its upper triangle "
                f"of {n_cond * (n_cond - 1) // 2} values (the searchlight RDMs have {n_cond} "
                f"conditions); got shape {tuple(arr.shape)}"
            )
        return ["model"], arr[None], True
    raise TypeError("model_rdms must be rsatoolbox RDMs, a dict name -> RDM, or one RDM as an "
                    f"array/tensor; got {type(model_rdms).__name__}")


def _aligned(rdms: Any, stimuli: np.ndarray | None) -> Any:
    """Model RDMs reordered to the searchlight's conditions when both name them."""
    if stimuli is None or "stimulus" not in rdms.pattern_descriptors:
        return rdms
    own = np.asarray(rdms.pattern_descriptors["stimulus"]).astype(str)
    want = np.asarray(stimuli).astype(str)
    if np.array_equal(own, want):
        return rdms
    if sorted(own.tolist()) != sorted(want.tolist()):
        missing = sorted(set(want) - set(own))[:5]
        raise ValueError(
            "model_rdms and the searchlight RDMs have different conditions (pattern descriptor "
            f"'stimulus'); e.g. missing from the model: {missing}"
        )
    order = np.argsort(own)[np.searchsorted(np.sort(own), want)]
    rdms = copy.deepcopy(rdms)
    rdms.reorder(order)  # in place (rsatoolbox), on the copy
    return rdms


def _rdm_names(rdms: Any) -> list[str]:
    for key in ("layer", "name", "model"):
        if key in rdms.rdm_descriptors:
            names = [str(v) for v in rdms.rdm_descriptors[key]]
            if len(set(names)) == len(names):
                return names
    return [f"rdm_{i}" for i in range(rdms.n_rdm)]


def _searchlight_parts(searchlight: Any) -> tuple[Any, np.ndarray, int, np.ndarray | None]:
    """(dissimilarities (array or h5py dataset), voxel_index, n_cond, stimuli) of one subject."""
    desc = getattr(searchlight, "rdm_descriptors", None)
    diss = getattr(searchlight, "dissimilarities", None)
    if desc is None or diss is None or "voxel_index" not in desc:
        raise TypeError(
            "searchlight must be searchlight RDMs (rsatoolbox RDMs with a 'voxel_index' rdm "
            "descriptor, as data_adapters.fmri.searchlight_rdms returns, or its opened HDF5 "
            f"file); got {type(searchlight).__name__}"
        )
    voxel_index = np.asarray(desc["voxel_index"], dtype=np.int64)
    if len(voxel_index) != diss.shape[0]:
        raise ValueError(f"searchlight: {diss.shape[0]} RDMs but {len(voxel_index)} voxel "
                         "indices")
    n_pairs = diss.shape[1]
    n_cond = round((1 + (1 + 8 * n_pairs) ** 0.5) / 2)
    pattern = getattr(searchlight, "pattern_descriptors", {}) or {}
    stimuli = np.asarray(pattern["stimulus"]) if "stimulus" in pattern else None
    return diss, voxel_index, n_cond, stimuli


# ----------------------------------------------------------------------------- maps


def searchlight_values(
    model_rdms: Any,
    searchlight: Any,
    *,
    method: str = "corr",
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Comparison of each model RDM with the RDM of each searchlight centre.

    Same numbers as ``rsatoolbox.rdm.compare(model_rdms, searchlight_rdms, method)``, computed
    a few thousand centres at a time with ``brainrdl.compare_vectors`` (one GEMM per chunk for
    ``corr`` / ``cosine``). Centres whose RDM holds NaN get NaN.

    Returns
    -------
    names : list of str
        One name per model RDM (dict keys, or the ``layer`` / ``name`` rdm descriptor).
    values : numpy.ndarray
        ``(n_models, n_centres)`` float64.
    voxel_index : numpy.ndarray
        ``(n_centres,)`` flat (C-order) index of each centre.

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> rng = np.random.default_rng(0)
    >>> data = rsatoolbox.rdm.RDMs(rng.random((5, 10)), rdm_descriptors={"voxel_index":
    ...                            np.arange(5)})
    >>> model = rsatoolbox.rdm.RDMs(rng.random((2, 10)))
    >>> names, values, _ = searchlight_values(model, data)
    >>> bool(np.allclose(values, rsatoolbox.rdm.compare(model, data, "corr")))
    True
    """
    check_choice("method", method, MAP_METHODS)
    diss, voxel_index, n_cond, stimuli = _searchlight_parts(searchlight)
    names, models, _ = _model_vectors(model_rdms, n_cond, stimuli)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if not torch.isfinite(models).all():
        raise ValueError("model_rdms hold NaN or infinite dissimilarities")
    models = models.to(dev)
    unit = _unit_models(models, method) if method in ("corr", "cosine") else None
    values = np.full((models.shape[0], diss.shape[0]), np.nan)
    starts = range(0, diss.shape[0], _ROWS_PER_CHUNK)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="comparing searchlights", unit="chunk", leave=False)
    for a in starts:
        chunk = torch.as_tensor(np.asarray(diss[a : a + _ROWS_PER_CHUNK]), dtype=torch.float64)
        chunk = chunk.to(dev)
        if method in ("corr", "cosine"):
            values[:, a : a + chunk.shape[0]] = _fast_cosine(unit, chunk, method).cpu().numpy()
            continue
        ok = torch.isfinite(chunk.sum(1))  # one reduction instead of a boolean pass
        if bool(ok.any()):
            sim = compare_vectors(models, chunk[ok], method)  # (M, rows)
            block = np.full((models.shape[0], chunk.shape[0]), np.nan)
            block[:, ok.cpu().numpy()] = sim.cpu().numpy()
            values[:, a : a + chunk.shape[0]] = block
    return names, values, voxel_index


def _unit_models(models: torch.Tensor, method: str) -> torch.Tensor:
    """Model vectors centred (corr) and scaled to unit length."""
    if method == "corr":
        models = models - models.mean(1, keepdim=True)
    return models / torch.linalg.vector_norm(models, dim=1, keepdim=True)


def _fast_cosine(unit: torch.Tensor, data: torch.Tensor, method: str) -> torch.Tensor:
    """(M, rows) Pearson r / cosine of unit model vectors with data rows, three passes over the
    data and no copy of it: the model vectors are centred, so ``unit · data`` already equals
    ``unit · centred(data)``; the data's norm after centring is √(Σx² − k·mean²). Rows with NaN
    give NaN, as rsatoolbox's compare does for such a pair."""
    dot = unit @ data.T
    sq = torch.linalg.vector_norm(data, dim=1) ** 2
    if method == "corr":
        sq = sq - data.sum(1) ** 2 / data.shape[1]
    norm = torch.sqrt(sq.clamp_min(0.0))
    return dot / torch.where(norm > 0, norm, torch.full_like(norm, torch.nan))[None, :]


def _to_image(values: np.ndarray, voxel_index: np.ndarray, mask: np.ndarray, affine,
              fill: float = 0.0):
    import nibabel as nib

    if voxel_index.size and int(voxel_index.max()) >= mask.size:
        raise ValueError(f"searchlight voxel_index goes up to {int(voxel_index.max())}, beyond "
                         f"the {mask.size} voxels of mask_img {mask.shape}: wrong mask?")
    vol = np.full(mask.size, fill, dtype=np.float32)
    vol[voxel_index] = np.nan_to_num(values, nan=fill)
    return nib.Nifti1Image(vol.reshape(mask.shape), affine)


def searchlight_map(
    model_rdms: Any,
    searchlight: Any,
    *,
    method: str = "corr",
    mask_img: Any,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Any:
    """Brain map(s) of how well model RDMs explain each searchlight: value at each centre.

    Parameters
    ----------
    model_rdms : rsatoolbox RDMs, dict, array or tensor
        Several model RDMs (one per layer: rsatoolbox ``RDMs`` named by a ``layer`` or ``name``
        rdm descriptor, or a dict name → RDM), or one RDM (square or upper-triangle vector).
        When both sides have a ``stimulus`` pattern descriptor, the model is reordered to the
        searchlight's conditions (a different condition set is an error).
    searchlight : searchlight RDMs, or a sequence of them (one per subject)
        From ``data_adapters.fmri.searchlight_rdms`` (RDMs with a ``voxel_index`` descriptor)
        or its HDF5 file opened with ``data_adapters.fmri.open_searchlight_rdms``.
    method : str, default "corr"
        Comparison (``brainrdl.compare`` names, rsatoolbox's numbers).
    mask_img : image or path
        The volume the centres index (the mask the searchlight RDMs were computed with).

    Returns
    -------
    nibabel.Nifti1Image or dict
        dict name → image when ``model_rdms`` holds named RDMs, one image for a single array /
        tensor. With several subjects, each image is 4D (one volume per subject). Voxels that
        are not centres (and centres with undefined RDMs) are 0.

    Examples
    --------
    >>> import numpy as np, nibabel as nib, rsatoolbox
    >>> mask = nib.Nifti1Image(np.ones((2, 2, 2), np.int8), np.eye(4))
    >>> rng = np.random.default_rng(0)
    >>> data = rsatoolbox.rdm.RDMs(rng.random((8, 6)), rdm_descriptors={"voxel_index":
    ...                            np.arange(8)})
    >>> maps = searchlight_map({"conv1": rng.random(6), "fc": rng.random(6)}, data,
    ...                        mask_img=mask)
    >>> sorted(maps), maps["fc"].shape
    (['conv1', 'fc'], (2, 2, 2))
    """
    import nibabel as nib

    mask, affine = _mask(mask_img)
    subjects = (list(searchlight) if isinstance(searchlight, (list, tuple)) else [searchlight])
    if not subjects:
        raise ValueError("searchlight is an empty sequence")
    per_subject = []
    for s in subjects:
        names, values, voxel_index = searchlight_values(model_rdms, s, method=method,
                                                        device=device, progress=progress)
        per_subject.append([_to_image(v, voxel_index, mask, affine) for v in values])
    _, _, single = _model_vectors(model_rdms, _searchlight_parts(subjects[0])[2],
                                  _searchlight_parts(subjects[0])[3])
    if isinstance(searchlight, (list, tuple)):
        images = [nib.Nifti1Image(np.stack([np.asarray(p[m].dataobj) for p in per_subject], -1),
                                  affine) for m in range(len(names))]
    else:
        images = per_subject[0]
    if single:
        return images[0]
    return dict(zip(names, images))


@dataclass
class PermutationMap:
    """Single-subject map with a condition-permutation test (max-statistic FWE over centres).

    Attributes
    ----------
    value, p_fwe, significant : nibabel.Nifti1Image
        The model fit at each centre, its FWE-corrected p-value, and 1 where ``p_fwe <= alpha``.
    threshold : float
        ``1 − alpha`` quantile of the maximum (over centres) fit of the permuted model.
    n_permutations, seed, alpha
        The test's settings.
    """

    value: Any
    p_fwe: Any
    significant: Any
    threshold: float
    n_permutations: int
    seed: int
    alpha: float


def searchlight_permutation_test(
    model_rdm: Any,
    searchlight: Any,
    *,
    mask_img: Any,
    method: str = "corr",
    n_permutations: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    device: str | torch.device | None = None,
) -> PermutationMap:
    """One subject's map of one model, tested by permuting the model's condition labels.

    Each permutation relabels the conditions of the model RDM (rows and columns together) and
    compares it with every searchlight RDM; the maximum over centres of each permutation forms
    the null distribution that controls the family-wise error over centres. The permutations
    are compared in one batched call per chunk of centres (a GEMM for ``corr``).

    Examples
    --------
    >>> import numpy as np, nibabel as nib, rsatoolbox
    >>> rng = np.random.default_rng(0)
    >>> model = rng.random(45)
    >>> data = rsatoolbox.rdm.RDMs(np.vstack([model + 0.1 * rng.random(45), rng.random((7, 45))]),
    ...                            rdm_descriptors={"voxel_index": np.arange(8)})
    >>> mask = nib.Nifti1Image(np.ones((2, 2, 2), np.int8), np.eye(4))
    >>> res = searchlight_permutation_test(model, data, mask_img=mask, n_permutations=200)
    >>> np.asarray(res.significant.dataobj).ravel().tolist()[:3]
    [1.0, 0.0, 0.0]
    """
    check_choice("method", method, MAP_METHODS)
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer; got {n_permutations!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    mask, affine = _mask(mask_img)
    diss, voxel_index, n_cond, stimuli = _searchlight_parts(searchlight)
    _, model, _ = _model_vectors(model_rdm, n_cond, stimuli)
    if model.shape[0] != 1:
        raise ValueError(f"model_rdm must be one RDM; got {model.shape[0]}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    rows, cols = torch.triu_indices(n_cond, n_cond, offset=1)
    square = torch.zeros(n_cond, n_cond, dtype=torch.float64)
    square[rows, cols] = model[0]
    square = square + square.T
    gen = torch.Generator().manual_seed(int(seed))
    perms = torch.stack([torch.randperm(n_cond, generator=gen) for _ in range(n_permutations)])
    permuted = square[perms[:, :, None], perms[:, None, :]][:, rows, cols].to(dev)
    _, values, _ = searchlight_values(model_rdm, searchlight, method=method, device=device)
    unit = _unit_models(permuted, method) if method in ("corr", "cosine") else None
    max_null = torch.full((n_permutations,), -torch.inf, dtype=torch.float64, device=dev)
    step = max(1, int(2**24 // max(1, n_permutations * 8)))
    for a in range(0, diss.shape[0], step):
        chunk = torch.as_tensor(np.asarray(diss[a : a + step]), dtype=torch.float64).to(dev)
        chunk = chunk[torch.isfinite(chunk).all(1)]
        if chunk.shape[0]:
            sim = (_fast_cosine(unit, chunk, method) if unit is not None
                   else compare_vectors(permuted, chunk, method))
            sim = torch.nan_to_num(sim, nan=-torch.inf)
            max_null = torch.maximum(max_null, sim.amax(1))
    null = max_null.cpu().numpy()
    obs = values[0]
    p = (1.0 + (null[None, :] >= np.nan_to_num(obs, nan=np.inf)[:, None]).sum(1)) / (
        n_permutations + 1.0)
    p = np.where(np.isfinite(obs), p, 1.0)
    threshold = float(np.quantile(np.append(null, np.nanmax(obs)), 1 - alpha))
    return PermutationMap(
        value=_to_image(obs, voxel_index, mask, affine),
        p_fwe=_to_image(p, voxel_index, mask, affine, fill=1.0),
        significant=_to_image((p <= alpha).astype(np.float64), voxel_index, mask, affine),
        threshold=threshold, n_permutations=int(n_permutations), seed=int(seed),
        alpha=float(alpha),
    )


# ----------------------------------------------------------------------------- group statistics


@dataclass
class GroupSearchlight:
    """Group statistics of subject maps (one value per voxel and subject).

    Attributes
    ----------
    mean, t, p_fwe, significant : nibabel.Nifti1Image
        Mean over subjects, one-sample t (signed), family-wise-error-corrected p (sign-flip
        permutation, maximum statistic), and 1 where ``p_fwe <= alpha`` (0 elsewhere and
        outside the mask).
    threshold : float
        The ``1 − alpha`` quantile of the permutation distribution of the maximum t (of |t| for
        a two-sided test): voxels beyond it are significant. With all flips enumerated the
        smallest attainable p is 1 / 2**n_subjects (2 / 2**n_subjects two-sided, as flipping
        every subject gives the same |t|): at alpha = 0.05 a two-sided test needs >= 6
        subjects, a one-sided one >= 5.
    n_permutations : int
        Sign flips used (all 2**n_subjects when that is not more than asked; the identity is
        then one of them).
    exact : bool
        Whether every sign flip was enumerated.
    seed : int
        Seed of the random sign flips.
    max_t : numpy.ndarray
        The permutation distribution of the maximum statistic.
    """

    mean: Any
    t: Any
    p_fwe: Any
    significant: Any
    threshold: float
    n_permutations: int
    exact: bool
    seed: int
    alpha: float
    max_t: np.ndarray


def _subject_matrix(maps: Any, mask: np.ndarray) -> np.ndarray:
    """(n_subjects, n_mask_voxels) from a 4D image or a sequence of 3D images / arrays."""
    if isinstance(maps, (list, tuple)):
        vols = []
        for i, m in enumerate(maps):
            arr = np.asarray(m) if isinstance(m, np.ndarray) else np.asarray(
                _load_img(m, f"maps[{i}]").dataobj)
            if arr.shape[:3] != mask.shape:
                raise ValueError(f"maps[{i}] has shape {arr.shape}; expected the mask's "
                                 f"{mask.shape}")
            vols.append(arr.reshape(*mask.shape, -1) if arr.ndim == 4 else arr[..., None])
        data = np.concatenate(vols, axis=3)
    else:
        data = np.asarray(_load_img(maps, "maps").dataobj)
        if data.ndim != 4 or data.shape[:3] != mask.shape:
            raise ValueError(f"maps must be a 4D image on the mask's grid {mask.shape} (one "
                             f"volume per subject) or a list of 3D images; got {data.shape}")
    return data[mask].T.astype(np.float64)


def group_searchlight(
    maps: Any,
    *,
    mask_img: Any,
    n_permutations: int = 5000,
    seed: int = 0,
    alpha: float = 0.05,
    tail: str = "greater",
    device: str | torch.device | None = None,
) -> GroupSearchlight:
    """One-sample t-map over subjects with a sign-flip permutation test (max-statistic FWE).

    Under the null hypothesis (the model explains nothing at any voxel), each subject's map is
    symmetric around 0, so flipping the sign of whole subject maps gives maps that are equally
    likely; the maximum t over voxels of each flip forms the null distribution that controls
    the family-wise error over all voxels (Nichols & Holmes 2002). Every flip is one GEMM of the
    (flips × subjects) sign matrix with the (subjects × voxels) data (the sum of squares does not
    change with the signs).

    Parameters
    ----------
    maps : 4D image, or list of 3D images / arrays
        One map per subject (e.g. a value of :func:`searchlight_map` with several subjects).
    mask_img : image or path
        Voxels tested (nonzero); voxels that are not finite in every subject are left out.
    n_permutations : int, default 5000
        Number of sign flips; when 2**n_subjects is not more, all flips are enumerated.
    seed : int, default 0
        Seed of the random flips (``torch.Generator``).
    alpha : float, default 0.05
        Family-wise error rate of ``significant`` and ``threshold``.
    tail : {"greater", "two-sided"}
        "greater" tests model fits above 0; "two-sided" uses |t|.

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> mask = nib.Nifti1Image(np.ones((3, 3, 3), np.int8), np.eye(4))
    >>> rng = np.random.default_rng(0)
    >>> maps = [nib.Nifti1Image(rng.normal(size=(3, 3, 3)) + 3 * (np.arange(27) == 0)
    ...         .reshape(3, 3, 3), np.eye(4)) for _ in range(8)]
    >>> res = group_searchlight(maps, mask_img=mask, n_permutations=1000)
    >>> res.n_permutations, res.exact, float(np.asarray(res.significant.dataobj)[0, 0, 0])
    (256, True, 1.0)
    """
    import nibabel as nib

    check_choice("tail", tail, ("greater", "two-sided"))
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer; got {n_permutations!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    mask, affine = _mask(mask_img)
    x = _subject_matrix(maps, mask)
    n_sub = x.shape[0]
    if n_sub < 2:
        raise ValueError(f"maps: a group t-test needs >= 2 subjects; got {n_sub}")
    finite = np.isfinite(x).all(0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    data = torch.as_tensor(x[:, finite], dtype=torch.float64, device=dev)
    sum_sq = (data * data).sum(0)

    def t_of(signs: torch.Tensor, signed: bool = False) -> torch.Tensor:
        mean = signs @ data / n_sub
        var = ((sum_sq - n_sub * mean * mean) / (n_sub - 1)).clamp_min(0.0)
        t = mean / torch.sqrt(var / n_sub)
        return t if tail == "greater" or signed else t.abs()

    exact = 2**n_sub <= n_permutations
    if exact:
        codes = torch.arange(2**n_sub, device=dev)
        bits = (codes[:, None] >> torch.arange(n_sub, device=dev)) & 1
        signs = (1.0 - 2.0 * bits).to(torch.float64)  # row 0: the identity
    else:
        gen = torch.Generator().manual_seed(int(seed))
        signs = (torch.randint(0, 2, (int(n_permutations), n_sub), generator=gen) * 2 - 1)
        signs = signs.to(dtype=torch.float64, device=dev)
    signed_t = t_of(torch.ones(1, n_sub, dtype=torch.float64, device=dev), signed=True)[0]
    observed = signed_t if tail == "greater" else signed_t.abs()
    step = max(1, int(2**24 // max(1, data.shape[1])))
    max_t = torch.cat([torch.nan_to_num(t_of(signs[a : a + step]), nan=-torch.inf).amax(1)
                       for a in range(0, signs.shape[0], step)])
    obs = torch.nan_to_num(observed, nan=-torch.inf)
    exceed = (max_t[None, :] >= obs[:, None]).sum(1).to(torch.float64)
    if exact:
        p = exceed / signs.shape[0]
        threshold = float(torch.quantile(max_t, 1 - alpha))
    else:  # the observed labelling counts as one more permutation
        p = (exceed + 1) / (signs.shape[0] + 1)
        threshold = float(torch.quantile(torch.cat([max_t, obs.max()[None]]), 1 - alpha))
    p = torch.where(torch.isfinite(observed), p, torch.ones_like(p))

    def image(values: np.ndarray, fill: float = 0.0):
        vol = np.full(mask.shape, fill, dtype=np.float32)
        inner = np.full(int(mask.sum()), fill, dtype=np.float64)
        inner[finite] = values
        vol[mask] = inner
        return nib.Nifti1Image(vol, affine)

    p_np = p.cpu().numpy()
    return GroupSearchlight(
        mean=image(data.mean(0).cpu().numpy()),
        t=image(np.nan_to_num(signed_t.cpu().numpy())),
        p_fwe=image(p_np, fill=1.0),
        significant=image((p_np <= alpha).astype(np.float64)),
        threshold=threshold,
        n_permutations=int(signs.shape[0]),
        exact=bool(exact),
        seed=int(seed),
        alpha=float(alpha),
        max_t=max_t.cpu().numpy(),
    )


# ----------------------------------------------------------------------------- noise ceiling


def _pool(v: torch.Tensor, method: str) -> torch.Tensor:
    """Normalise (..., S, P) RDM vectors per RDM as rsatoolbox's ``pool_rdm`` (before the mean)."""
    if method == "cosine":
        return v / torch.sqrt((v * v).mean(-1, keepdim=True))
    if method == "corr":
        v = v - v.mean(-1, keepdim=True)
        return v / torch.sqrt((v * v).mean(-1, keepdim=True))
    return rank_transform(v)


def searchlight_noise_ceiling(
    searchlights: Sequence[Any],
    *,
    mask_img: Any,
    method: str = "corr",
    device: str | torch.device | None = None,
) -> tuple[Any, Any]:
    """Noise ceiling at each centre from several subjects' searchlight RDMs.

    At every centre, the subjects' RDMs are pooled as ``rsatoolbox.util.inference_util.pool_rdm``
    pools them for ``method``; the upper bound is the mean comparison of each subject's RDM with
    the pool of all subjects, the lower bound with the pool of the other subjects (the numbers
    of ``brainrdl.noise_ceiling`` / rsatoolbox's ``boot_noise_ceiling`` at each centre).

    Returns
    -------
    lower, upper : nibabel.Nifti1Image
        Ceiling bounds at the centres (0 elsewhere).

    Examples
    --------
    >>> import numpy as np, nibabel as nib, rsatoolbox
    >>> mask = nib.Nifti1Image(np.ones((2, 1, 1), np.int8), np.eye(4))
    >>> rng = np.random.default_rng(0)
    >>> subs = [rsatoolbox.rdm.RDMs(rng.random((2, 10)), rdm_descriptors={"voxel_index":
    ...         np.arange(2)}) for _ in range(3)]
    >>> low, up = searchlight_noise_ceiling(subs, mask_img=mask)
    >>> bool((np.asarray(low.dataobj) <= np.asarray(up.dataobj)).all())
    True
    """
    check_choice("method", method, CEILING_METHODS)
    if len(searchlights) < 2:
        raise ValueError(f"searchlights: a noise ceiling needs >= 2 subjects; got "
                         f"{len(searchlights)}")
    mask, affine = _mask(mask_img)
    parts = [_searchlight_parts(s) for s in searchlights]
    voxel_index = parts[0][1]
    for i, p in enumerate(parts[1:], start=1):
        if not np.array_equal(p[1], voxel_index) or p[0].shape != parts[0][0].shape:
            raise ValueError(f"searchlights[{i}] has other centres (voxel_index) or RDM sizes "
                             "than searchlights[0]; compute all subjects with the same mask")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    n_sub = len(parts)
    lower = np.full(voxel_index.size, np.nan)
    upper = np.full(voxel_index.size, np.nan)
    step = max(1, _ROWS_PER_CHUNK // n_sub)
    for a in range(0, voxel_index.size, step):
        y = torch.stack([torch.as_tensor(np.asarray(p[0][a : a + step]), dtype=torch.float64)
                         for p in parts], 1).to(dev)  # (rows, S, P)
        ok = torch.isfinite(y).all(2).all(1)
        y = y[ok]
        z = _pool(y, method)
        total = z.sum(1, keepdim=True)
        pooled_all = total / n_sub
        pooled_out = (total - z) / (n_sub - 1)  # (rows, S, P): leave one subject out
        up = compare_vectors(pooled_all, y, method)[:, 0, :].mean(1)  # (rows,)
        low = compare_vectors(pooled_out[:, :, None, :], y[:, :, None, :], method)
        low = low[:, :, 0, 0].mean(1)
        rows = np.flatnonzero(ok.cpu().numpy()) + a
        lower[rows] = low.cpu().numpy()
        upper[rows] = up.cpu().numpy()
    return (_to_image(lower, voxel_index, mask, affine),
            _to_image(upper, voxel_index, mask, affine))


# ----------------------------------------------------------------------------- plots


def plot_searchlight(
    img: Any,
    *,
    kind: str = "glass",
    colorbar_label: str = "model fit (Pearson r)",
    title: str | None = None,
    threshold: float | None = None,
    output_file: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Any:
    """Draw a map with ``nilearn.plotting`` (glass brain or slices), colour bar named.

    Parameters
    ----------
    img : image or path
        A 3D map (e.g. a value of :func:`searchlight_map`, or ``GroupSearchlight.t``).
    kind : {"glass", "stat"}
        ``plot_glass_brain`` or ``plot_stat_map`` (slices over the image itself as background
        unless ``bg_img`` is given).
    colorbar_label : str
        Name of the quantity, written on the colour bar.
    threshold : float, optional
        Values below it (in absolute value) are not drawn.
    output_file : path, optional
        Save the figure there and close it.
    **kwargs : Any
        Passed to the nilearn function.

    Returns
    -------
    The nilearn display (None when saved to ``output_file``).

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, nibabel as nib
    >>> img = nib.Nifti1Image(np.random.default_rng(0).random((5, 5, 5)).astype("f4"),
    ...                       np.diag([3, 3, 3, 1.0]))
    >>> display = plot_searchlight(img, kind="stat", colorbar_label="r", display_mode="z",
    ...                            cut_coords=2)
    >>> display._cbar.ax.get_ylabel()
    'r'
    >>> display.close()
    """
    from nilearn import plotting

    check_choice("kind", kind, ("glass", "stat"))
    img = _load_img(img, "img")
    if kind == "glass":
        kwargs.setdefault("plot_abs", False)
        display = plotting.plot_glass_brain(img, colorbar=True, threshold=threshold,
                                            title=title, **kwargs)
    else:
        kwargs.setdefault("bg_img", None)
        kwargs.setdefault("black_bg", False)
        display = plotting.plot_stat_map(img, colorbar=True, threshold=threshold, title=title,
                                         **kwargs)
    cbar = getattr(display, "_cbar", None)
    if cbar is not None:
        cbar.set_label(colorbar_label)
    if output_file is not None:
        display.savefig(str(output_file), dpi=120)
        display.close()
        return None
    return display
