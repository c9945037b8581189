"""Small readers shared by the fMRI adapter: images (paths or nibabel), TSV tables, volume labels.

Images are opened lazily (nibabel proxies) so that a whole-brain 4D file is never loaded at
once; :func:`iter_volume_chunks` streams it a few hundred volumes at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from brainrdl.errors import InvalidArgumentError, InvalidTypeError
from brainrdl.validation import check_input_file, reading

ImageLike = Any  # a path or a nibabel spatial image
# bytes of voxel data handled per chunk when streaming a 4D image
_CHUNK_BYTES = 256 * 2**20


def load_image(img: ImageLike, name: str = "img") -> Any:
    """Open ``img`` (a path or a nibabel image) as a nibabel image without reading its data.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> load_image(nib.Nifti1Image(np.zeros((2, 2, 2)), np.eye(4))).shape
    (2, 2, 2)
    """
    import nibabel as nib

    if isinstance(img, (str, os.PathLike)):
        path = check_input_file(name, img, "image file")
        with reading(path, "image file"):
            return nib.load(path)
    if hasattr(img, "affine") and hasattr(img, "dataobj") and hasattr(img, "shape"):
        return img
    raise InvalidTypeError(f"{name} must be a path or a nibabel image, got {type(img).__name__}")


def image_data(img: Any) -> np.ndarray:
    """All data of a nibabel image as an array; a truncated or corrupt file raises a
    DataFileError naming its full path (nibabel reads lazily, so this is where it fails).

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> image_data(nib.Nifti1Image(np.ones((2, 2, 2)), np.eye(4))).sum()
    np.float64(8.0)
    """
    with reading(_filename(img), "image file"):
        return np.asarray(img.dataobj)


def _filename(img: Any) -> str:
    """The file an image was read from, or a description for in-memory images."""
    get = getattr(img, "get_filename", None)
    name = get() if callable(get) else None
    return name or "<in-memory image>"


class VolumeSource:
    """A 4D image, or a list of 3D images, seen as one sequence of 3D volumes on one grid.

    Parameters
    ----------
    images : path, nibabel image, or sequence of those
        One 4D image, or several 3D images (one volume each).
    name : str
        Argument name used in error messages.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> src = VolumeSource(nib.Nifti1Image(np.zeros((2, 3, 4, 5)), np.eye(4)))
    >>> src.shape, src.n_volumes
    ((2, 3, 4), 5)
    """

    def __init__(self, images: ImageLike | Sequence[ImageLike], name: str = "betas") -> None:
        self.name = name
        if isinstance(images, (list, tuple)):
            if not images:
                raise InvalidArgumentError(f"{name} is an empty list; expected 3D images")
            self.images = [load_image(im, f"{name}[{i}]") for i, im in enumerate(images)]
            for i, im in enumerate(self.images):
                if len(im.shape) != 3 and not (len(im.shape) == 4 and im.shape[3] == 1):
                    raise InvalidArgumentError(
                        f"{name}[{i}] must be a 3D image when {name} is a list; got shape "
                        f"{im.shape}"
                    )
            first = self.images[0]
            for i, im in enumerate(self.images[1:], start=1):
                if im.shape[:3] != first.shape[:3] or not np.allclose(
                    im.affine, first.affine, atol=1e-3
                ):
                    raise InvalidArgumentError(
                        f"{name}[{i}] is not on the grid of {name}[0] (shape {im.shape[:3]} vs "
                        f"{first.shape[:3]}, or a different affine)"
                    )
            self.is_list = True
            self.n_volumes = len(self.images)
        else:
            img = load_image(images, name)
            if len(img.shape) != 4:
                raise InvalidArgumentError(
                    f"{name} must be a 4D image (x, y, z, volume) or a list of 3D images; got a "
                    f"{len(img.shape)}D image of shape {img.shape}"
                )
            self.images = [img]
            self.is_list = False
            self.n_volumes = int(img.shape[3])
        self.shape: tuple[int, int, int] = tuple(int(s) for s in self.images[0].shape[:3])
        self.affine: np.ndarray = np.asarray(self.images[0].affine, dtype=float)

    def reference(self) -> Any:
        """A small 3D image on this grid (for resampling atlases to it)."""
        import nibabel as nib

        return nib.Nifti1Image(np.zeros(self.shape, dtype=np.int8), self.affine)

    def iter_chunks(self, flat_index: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, values)``: ``values`` is (n_volumes_in_chunk, len(flat_index)) float64.

        ``flat_index`` indexes the raveled 3D grid in C order.
        """
        # NIfTI data are stored x-fastest (Fortran order): index them that way, so that no
        # chunk is ever copied into C order (that copy cost 40 s on a whole-brain 4D file)
        f_index = np.ravel_multi_index(np.unravel_index(flat_index, self.shape), self.shape,
                                       order="F")
        if self.is_list:
            for t, img in enumerate(self.images):
                vol = image_data(img).reshape(-1, order="F")
                yield t, vol[f_index].astype(np.float64)[None, :]
            return
        img = self.images[0]
        data = _memmap(img)
        if data is None:  # compressed or scaled: nibabel reads (and scales) chunk by chunk
            data = img.dataobj
        per_volume = int(np.prod(self.shape)) * max(4, img.get_data_dtype().itemsize)
        step = max(1, _CHUNK_BYTES // per_volume)
        for start in range(0, self.n_volumes, step):
            stop = min(start + step, self.n_volumes)
            # only these volumes are read; values keep the stored dtype until the float64
            # cast (float64 data must not pass through float32)
            with reading(_filename(img), "image file"):
                block = np.asarray(data[..., start:stop]).reshape(-1, stop - start, order="F")
            yield start, block[f_index].T.astype(np.float64)


def _memmap(img: Any) -> np.ndarray | None:
    """A read-only memory map of an uncompressed, unscaled NIfTI's data, else None.

    Gathering ROI voxels from the map touches only the pages that hold them, and skips the
    copy into a read buffer that slicing nibabel's proxy makes.
    """
    proxy = img.dataobj
    file_like = getattr(proxy, "file_like", None)
    if not isinstance(file_like, (str, os.PathLike)) or str(file_like).endswith(".gz"):
        return None
    if getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0:
        return None
    if getattr(proxy, "order", "F") != "F":
        return None
    try:
        return np.memmap(file_like, dtype=proxy.dtype, mode="r", offset=int(proxy.offset),
                         shape=tuple(proxy.shape), order="F")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - odd files: read instead
        return None


def read_tsv(path: str | os.PathLike, name: str) -> Any:
    """Read a tab-separated table (BIDS style, ``n/a`` as missing) into a DataFrame.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.tsv"; _ = p.write_text("a\\tb\\n1\\tx\\n")
    >>> read_tsv(p, "table").columns.tolist()
    ['a', 'b']
    """
    import pandas as pd

    path = check_input_file(name, path, "TSV file")
    with reading(path, "TSV file"):
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)


_CONDITION_COLUMNS = ("condition", "stimulus", "trial_type", "conds")


def volume_labels(
    conditions: Any, runs: Any, n_volumes: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-volume condition and run labels from arrays or a TSV (columns condition/run).

    Parameters
    ----------
    conditions : array-like or path
        One label per volume, or a TSV with a ``condition`` (or ``stimulus``, ``trial_type``)
        column and, optionally, a ``run`` column.
    runs : array-like, optional
        One run label per volume; when None the TSV's ``run`` column is used if present.
    n_volumes : int
        Number of volumes the labels must match.

    Examples
    --------
    >>> c, r = volume_labels(["a", "b"], [1, 1], 2)
    >>> c.tolist(), r.tolist()
    (['a', 'b'], [1, 1])
    """
    if isinstance(conditions, (str, os.PathLike)):
        table = read_tsv(conditions, "conditions")
        column = next((c for c in _CONDITION_COLUMNS if c in table.columns), None)
        if column is None:
            raise InvalidArgumentError(
                f"conditions table {str(conditions)!r} needs one of the columns "
                f"{list(_CONDITION_COLUMNS)}; it has {table.columns.tolist()}"
            )
        if runs is None and "run" in table.columns:
            runs = table["run"].to_numpy()
        conditions = table[column].to_numpy()
    cond = _as_labels(conditions, "conditions", n_volumes)
    run = None if runs is None else _as_labels(runs, "runs", n_volumes)
    return cond, run


def _as_labels(values: Any, name: str, n_volumes: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidArgumentError(
            f"{name} must be one-dimensional (one label per volume); got shape {arr.shape}")
    if len(arr) != n_volumes:
        raise InvalidArgumentError(
            f"{name} has {len(arr)} labels but the images have {n_volumes} volumes; expected "
            "one label per volume"
        )
    if arr.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
            raise InvalidArgumentError(f"{name} contains missing labels (None/NaN)")
        arr = arr.astype(str)
    elif arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InvalidArgumentError(f"{name} contains missing labels (NaN)")
    return arr
