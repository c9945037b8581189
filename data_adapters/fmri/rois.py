"""Regions of interest on the grid of the data: binary masks, several masks, or an atlas + labels.

Each ROI becomes a boolean 3D array on the data grid. An atlas or mask on another grid is refused
unless ``resample=True``, in which case it is resampled with nilearn's ``resample_to_img``
(nearest neighbour, so label values stay labels) and a warning says so.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from brainrdl.errors import DataFileError, InvalidArgumentError, InvalidTypeError
from data_adapters.fmri._io import ImageLike, image_data, load_image, read_tsv

#: largest absolute difference between two affines (mm) still treated as the same grid
AFFINE_ATOL = 1e-3

LabelSpec = Mapping[str, "int | Sequence[int]"]


def read_label_table(labels: LabelSpec | str | os.PathLike) -> dict[str, list[int]]:
    """Atlas labels as ``{name: [values]}``, from a dict or a lookup TSV (columns index, name).

    A name that appears on several rows of the TSV collects all their values.

    Examples
    --------
    >>> read_label_table({"V1": 1, "IT": [5, 6]})
    {'V1': [1], 'IT': [5, 6]}
    """
    if isinstance(labels, (str, os.PathLike)):
        table = read_tsv(labels, "labels")
        missing = {"index", "name"} - set(table.columns)
        if missing:
            raise InvalidArgumentError(
                f"labels table {str(labels)!r} needs the columns 'index' and 'name'; it has "
                f"{table.columns.tolist()}"
            )
        out: dict[str, list[int]] = {}
        for row, (index, name) in enumerate(zip(table["index"], table["name"])):
            if not _is_integer_value(index):
                raise DataFileError(
                    labels, f"labels table row {row + 1}: index {index!r} (name {name!r}) is not "
                    "an integer atlas value; the 'index' column must hold integers"
                )
            out.setdefault(str(name), []).append(int(float(index)))
        return out
    if not isinstance(labels, Mapping):
        raise InvalidTypeError(
            "labels must be a dict {name: value or [values]} or a path to a TSV with columns "
            f"index and name; got {type(labels).__name__}"
        )
    out = {}
    for name, value in labels.items():
        values = [value] if np.isscalar(value) else list(value)
        if not values or not all(_is_integer_value(v) for v in values):
            raise InvalidArgumentError(
                f"labels[{name!r}] must be an integer atlas value or a list of them; got "
                f"{value!r}")
        out[str(name)] = [int(float(v)) for v in values]
    return out


def _is_integer_value(v: Any) -> bool:
    """Whether ``v`` is an integer atlas value (1, 1.0, "3"); False for "V1", 1.5, NaN, True."""
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(f) and f.is_integer())


def _on_grid(img: Any, shape: tuple[int, ...], affine: np.ndarray, name: str,
             resample: bool) -> np.ndarray:
    """Data of a 3D ``img`` on the target grid (resampled with nearest neighbour if allowed).

    A numpy array is taken to be on the data grid already and must have its shape.
    """
    if isinstance(img, np.ndarray):
        if img.shape != tuple(shape):
            raise InvalidArgumentError(
                f"{name} is an array of shape {img.shape}; an array must have the "
                             f"data grid shape {tuple(shape)} (use an image to resample)")
        return img
    img = load_image(img, name)
    img_shape = tuple(img.shape)
    if len(img_shape) == 4 and img_shape[3] == 1:
        img_shape = img_shape[:3]
    if len(img_shape) != 3:
        raise InvalidArgumentError(f"{name} must be a 3D image; got shape {tuple(img.shape)}")
    same = img_shape == tuple(shape) and np.allclose(img.affine, affine, atol=AFFINE_ATOL)
    if same:
        return image_data(img).reshape(shape)
    diff = float(np.abs(np.asarray(img.affine) - affine).max())
    if not resample:
        raise InvalidArgumentError(
            f"{name} is not on the grid of the data: shape {img_shape} vs {tuple(shape)}, largest "
            f"affine difference {diff:.3g} (tolerance {AFFINE_ATOL}); pass resample=True to "
            "resample it (nearest neighbour) onto the data grid"
        )
    import nibabel as nib
    from nilearn.image import resample_to_img

    warnings.warn(
        f"{name} is on another grid (shape {img_shape} vs {tuple(shape)}, affine difference "
        f"{diff:.3g}); resampling it to the data grid with nearest-neighbour interpolation",
        UserWarning,
        stacklevel=4,
    )
    target = nib.Nifti1Image(np.zeros(shape, dtype=np.int8), affine)
    src = nib.Nifti1Image(image_data(img).reshape(img_shape), img.affine)
    out = resample_to_img(
        src, target, interpolation="nearest", force_resample=True, copy_header=True
    )
    return np.asarray(out.dataobj)


def _no_labels_message(atlas: Any, resample: bool) -> str:
    """Why an atlas has no labelled voxel on the data grid (empty atlas, or off the grid)."""
    if not isinstance(atlas, np.ndarray) and resample:
        original = image_data(load_image(atlas, "atlas"))
        if np.any(np.nan_to_num(original) != 0):
            return (
                "no atlas voxel overlaps the data grid: after resampling the atlas onto the "
                "data grid (nearest neighbour) every voxel is background (0); check that the "
                "atlas and the data are in the same space (their affines)"
            )
    return "atlas has no labelled (non-zero) voxel; expected integer ROI labels"


def roi_masks(
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    atlas: ImageLike | None = None,
    labels: LabelSpec | str | os.PathLike | None = None,
    masks: ImageLike | Mapping[str, ImageLike] | None = None,
    resample: bool = False,
) -> dict[str, np.ndarray]:
    """Boolean ROI masks on the data grid, from an atlas + labels and/or binary masks.

    Parameters
    ----------
    shape, affine
        The data grid (3D shape and 4x4 voxel-to-mm affine).
    atlas : path, image or array, optional
        Integer label image (0 = background).
    labels : dict or path, optional
        ``{"V1": 1, "IT": [5, 6]}`` or a lookup TSV (columns ``index``, ``name``). Default: every
        non-zero atlas value, named by its value.
    masks : path, image, array, or dict name -> one of those, optional
        Binary masks (non-zero = inside); a single mask is named ``"mask"``. Arrays must already
        be on the data grid.
    resample : bool, default False
        Resample images on another grid (nearest neighbour) instead of refusing them.

    Returns
    -------
    dict
        ROI name -> boolean array of ``shape``.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> atlas = nib.Nifti1Image(np.array([[[0, 1], [2, 2]]], dtype=np.int16), np.eye(4))
    >>> m = roi_masks((1, 2, 2), np.eye(4), atlas=atlas, labels={"a": 1, "b": 2})
    >>> {k: int(v.sum()) for k, v in m.items()}
    {'a': 1, 'b': 2}
    """
    if atlas is None and masks is None:
        raise InvalidArgumentError(
            "give an atlas (with labels) or masks to define the ROIs; got neither")
    if labels is not None and atlas is None:
        raise InvalidArgumentError("labels were given without an atlas; pass atlas= as well")
    affine = np.asarray(affine, dtype=float)
    out: dict[str, np.ndarray] = {}
    if atlas is not None:
        data = _on_grid(atlas, shape, affine, "atlas", resample)
        if not np.all(np.isfinite(data)):
            raise InvalidArgumentError(
                "atlas contains NaN or infinite values; expected integer labels")
        data = np.rint(data).astype(np.int64)
        present = np.unique(data[data != 0])
        if present.size == 0:
            raise InvalidArgumentError(_no_labels_message(atlas, resample))
        if labels is None:
            table = {str(v): [int(v)] for v in present}
        else:
            table = read_label_table(labels)
        for name, values in table.items():
            unknown = [v for v in values if v not in present]
            if unknown:
                raise InvalidArgumentError(
                    f"ROI {name!r}: label value(s) {unknown} do not occur in the atlas; values "
                    f"present are {present.tolist()[:20]}"
                    + (" ..." if len(present) > 20 else "")
                )
            out[name] = np.isin(data, values)
    if masks is not None:
        items = masks.items() if isinstance(masks, Mapping) else [("mask", masks)]
        for name, mask in items:
            name = str(name)
            if name in out:
                raise InvalidArgumentError(f"ROI name {name!r} is used by both labels and masks")
            arg = f"masks[{name!r}]" if isinstance(masks, Mapping) else "masks"
            data = _on_grid(mask, shape, affine, arg, resample)
            out[name] = np.nan_to_num(np.asarray(data, dtype=float)) != 0
    for name, mask in out.items():
        if not mask.any():
            raise InvalidArgumentError(f"ROI {name!r} is empty: it has no voxels on the data grid")
    return out
