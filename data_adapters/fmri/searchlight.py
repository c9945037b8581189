"""Searchlight neighbourhoods and searchlight RDMs, batched in torch under a memory budget.

Neighbourhoods are those of ``rsatoolbox.util.searchlight.get_volume_searchlight(mask, radius,
threshold)``: every nonzero mask voxel is a candidate centre; its neighbours are the voxels of the
volume whose euclidean distance to the centre (in voxels) is strictly below ``radius``; a centre
is kept when the fraction of its neighbours inside the mask is ``>= threshold``. Neighbours are
listed in rsatoolbox's order, so even the channel order of every RDM's data is the same.

RDMs are computed for blocks of centres at a time: a block's patterns are gathered into one
(block, conditions, max_neighbours) tensor padded with zeros, and every RDM of the block comes
from one batched Gram product. Without noise (correlation, euclidean, mahalanobis) the spheres
of consecutive centres along z share their Grams: each is the previous one updated by the voxels
entering and leaving (``_gram_runs``), and on the CPU the blocks run on
``torch.get_num_threads()`` threads. The block size follows ``memory_budget``, so memory stays
bounded whatever the number of centres; results go to an in-memory rsatoolbox ``RDMs`` or, with
``out``, straight into an HDF5 file.

Examples
--------
>>> import numpy as np
>>> mask = np.zeros((6, 6, 6), bool); mask[1:5, 1:5, 1:5] = True
>>> nb = searchlight_neighbourhoods(mask, radius=2, threshold=0.5)
>>> len(nb), int(nb.sizes.max())
(32, 27)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainrdl.rsa.crossnobis import crossnobis_from_fold_sums
from brainrdl.rsa.distances import upper_tri
from brainrdl.validation import check_choice
from data_adapters.fmri._gram_runs import CHUNK, GramRuns
from data_adapters.fmri._io import ImageLike, VolumeSource, load_image, volume_labels

__all__ = [
    "METHODS",
    "NOISE_METHODS",
    "Neighbourhoods",
    "merge_searchlight_shards",
    "open_searchlight_rdms",
    "read_searchlight_rdms",
    "searchlight_neighbourhoods",
    "searchlight_rdms",
]

#: Dissimilarity measures of :func:`searchlight_rdms` (rsatoolbox's names).
METHODS = ("euclidean", "correlation", "mahalanobis", "crossnobis")
#: Noise estimates made per searchlight (rsatoolbox's ``prec_from_*`` method names).
NOISE_METHODS = ("shrinkage_diag", "diag")

_NEIGHBOUR_CHUNK = 16384  # centres per vectorised neighbour search (≈ 16384 × 123 × 3 int64)


# ----------------------------------------------------------------------------- neighbourhoods


@dataclass
class Neighbourhoods:
    """Searchlight centres and their neighbours as flat (C-order) indices into a 3D volume.

    Attributes
    ----------
    centres : numpy.ndarray
        ``(n_centres,)`` int64 flat indices of the centres (rsatoolbox's ``centers``).
    indices : numpy.ndarray
        ``(n_centres, max_size)`` int64 flat indices of each centre's neighbours in rsatoolbox's
        order, padded with -1.
    sizes : numpy.ndarray
        ``(n_centres,)`` number of neighbours of each centre.
    shape : tuple of int
        The volume's shape.
    radius, threshold : float
        The parameters that made them.
    spherical : bool
        True when each centre's neighbours are exactly the ball of ``radius`` around it
        intersected with one fixed set of voxels (the volume, or the mask), as
        :func:`searchlight_neighbourhoods` makes them. Then :func:`searchlight_rdms` shares the
        work of overlapping spheres along runs of centres; False (the default for hand-made
        neighbourhoods) forms every Gram from the whole neighbourhood.
    """

    centres: np.ndarray
    indices: np.ndarray
    sizes: np.ndarray
    shape: tuple[int, int, int]
    radius: float
    threshold: float
    spherical: bool = False

    def __len__(self) -> int:
        return int(self.centres.size)

    def neighbours(self, i: int) -> np.ndarray:
        """Flat indices of the neighbours of centre ``i`` (as rsatoolbox's ``neighbors[i]``)."""
        return self.indices[i, : self.sizes[i]]

    def as_lists(self) -> list[np.ndarray]:
        """rsatoolbox's ``neighbors``: one array of flat indices per centre."""
        return [self.neighbours(i) for i in range(len(self))]

    def subset(self, keep: np.ndarray) -> Neighbourhoods:
        """The centres selected by a boolean mask or an index array."""
        sizes = self.sizes[keep]
        width = int(sizes.max()) if sizes.size else 0
        # a subset of spheres keeps the property: each kept centre's ball ∩ voxel set is unchanged
        return Neighbourhoods(self.centres[keep], self.indices[keep, :width], sizes, self.shape,
                              self.radius, self.threshold, self.spherical)


def ball_offsets(radius: float) -> np.ndarray:
    """Integer offsets (dx, dy, dz) with |offset| < radius, in rsatoolbox's neighbour order.

    rsatoolbox builds the sphere with ``np.meshgrid(x, y, z)`` (``"xy"`` indexing) and ravels
    it, so y varies slowest, then x, then z.

    Examples
    --------
    >>> ball_offsets(1.5).shape
    (19, 3)
    """
    if not (isinstance(radius, (int, float, np.integer, np.floating)) and radius > 0):
        raise ValueError(f"radius must be a positive number of voxels; got {radius!r}")
    r = math.ceil(radius)
    span = np.arange(-r, r + 1)
    span = span[np.abs(span) < radius]
    dy, dx, dz = np.meshgrid(span, span, span, indexing="ij")  # y slowest, z fastest
    off = np.stack([dx.ravel(), dy.ravel(), dz.ravel()], axis=1)
    return off[np.sqrt((off.astype(np.float64) ** 2).sum(1)) < radius]


def _mask_array(mask: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(3D bool array, affine or None) from a mask image, path or array."""
    if isinstance(mask, Neighbourhoods):
        raise TypeError("mask must be an image, a path or a 3D array, not Neighbourhoods")
    if isinstance(mask, np.ndarray):
        arr, affine = mask, None
    else:
        img = load_image(mask, "mask")
        arr, affine = np.asarray(img.dataobj), np.asarray(img.affine, dtype=float)
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"mask must be a 3D volume; got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("mask contains NaN or infinite values; expected 0/1 (or booleans)")
    arr = arr != 0
    if not arr.any():
        raise ValueError("mask has no nonzero voxel: there is no searchlight centre")
    return arr, affine


def searchlight_neighbourhoods(
    mask: ImageLike | np.ndarray,
    radius: float = 3,
    threshold: float = 1.0,
    *,
    truncate_at_boundary: bool = False,
    min_voxels: int = 1,
) -> Neighbourhoods:
    """Searchlight centres and neighbours, equal to rsatoolbox's ``get_volume_searchlight``.

    Vectorised over centres (no per-centre loop): about 0.1 s per 20,000 centres.

    Parameters
    ----------
    mask : image, path or 3D array
        Brain mask; nonzero voxels are the candidate centres.
    radius : float, default 3
        Neighbours are voxels at distance ``< radius`` (in voxels) from the centre.
    threshold : float, default 1.0
        A centre is kept when the fraction of its (in-volume) neighbours inside the mask is
        ``>= threshold`` (rsatoolbox's rule).
    truncate_at_boundary : bool, default False
        Keep only neighbours inside the mask (rsatoolbox's option of the same name).
    min_voxels : int, default 1
        Also drop centres with fewer neighbours than this (not in rsatoolbox; 1 drops none).

    Returns
    -------
    Neighbourhoods

    Examples
    --------
    >>> import numpy as np
    >>> from rsatoolbox.util.searchlight import get_volume_searchlight
    >>> mask = np.random.default_rng(0).random((7, 6, 5)) > 0.3
    >>> nb = searchlight_neighbourhoods(mask, radius=2, threshold=0.7)
    >>> centres, neighbours = get_volume_searchlight(mask, 2, 0.7)  # doctest: +ELLIPSIS
    Found ... searchlights
    >>> bool(np.array_equal(nb.centres, centres))
    True
    >>> all(np.array_equal(a, b) for a, b in zip(nb.as_lists(), neighbours))
    True
    """
    arr, _ = _mask_array(mask)
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold!r}")
    if not isinstance(min_voxels, (int, np.integer)) or min_voxels < 1:
        raise ValueError(f"min_voxels must be a positive integer; got {min_voxels!r}")
    shape = tuple(int(s) for s in arr.shape)
    offsets = ball_offsets(radius)
    flat_mask = arr.reshape(-1)
    candidates = np.flatnonzero(flat_mask)  # C order, as np.nonzero
    ijk_all = np.stack(np.unravel_index(candidates, shape), axis=1)
    bounds = np.array(shape)
    kept_c, kept_idx, kept_sizes = [], [], []
    for start in range(0, candidates.size, _NEIGHBOUR_CHUNK):
        ijk = ijk_all[start : start + _NEIGHBOUR_CHUNK]
        cand = ijk[:, None, :] + offsets[None, :, :]
        inside = ((cand >= 0) & (cand < bounds)).all(axis=2)
        flat = np.ravel_multi_index(tuple(np.clip(cand, 0, bounds - 1).transpose(2, 0, 1)),
                                    shape)
        in_mask = inside & flat_mask[flat]
        # rsatoolbox: mask[neighbors].mean() >= threshold, over the in-volume sphere
        n_in = inside.sum(1)
        if truncate_at_boundary:
            keep_vox, frac = in_mask, np.ones(len(ijk))
        else:
            keep_vox, frac = inside, in_mask.sum(1) / n_in
        good = frac >= threshold
        sizes = keep_vox.sum(1)
        good &= sizes >= min_voxels
        order = np.argsort(~keep_vox[good], axis=1, kind="stable")  # valid first, order kept
        idx = np.take_along_axis(flat[good], order, axis=1)
        sz = sizes[good]
        idx[np.arange(idx.shape[1])[None, :] >= sz[:, None]] = -1
        kept_c.append(candidates[start : start + _NEIGHBOUR_CHUNK][good])
        kept_idx.append(idx)
        kept_sizes.append(sz)
    sizes = np.concatenate(kept_sizes).astype(np.int64)
    width = int(sizes.max()) if sizes.size else 0
    indices = np.concatenate([i[:, :width] for i in kept_idx]).astype(np.int64)
    return Neighbourhoods(np.concatenate(kept_c).astype(np.int64), indices, sizes, shape,
                          float(radius), float(threshold), spherical=True)


# ----------------------------------------------------------------------------- data


def _read_data(betas, mask_shape, mask_flat, union, name="betas") -> np.ndarray:
    """(n_observations, len(union)) float64 values of the voxels ``union`` (flat indices)."""
    if isinstance(betas, (np.ndarray, torch.Tensor)):
        data = betas.detach().cpu().numpy() if isinstance(betas, torch.Tensor) else betas
        if data.ndim != 2:
            raise ValueError(
                f"{name} must be (observations, voxels) when given as an array; got shape "
                f"{data.shape}"
            )
        n_full, n_mask = int(np.prod(mask_shape)), int(mask_flat.sum())
        if data.shape[1] == n_full:
            return np.asarray(data[:, union], dtype=np.float64)
        if data.shape[1] == n_mask:
            position = np.full(n_full, -1, dtype=np.int64)
            position[np.flatnonzero(mask_flat)] = np.arange(n_mask)
            cols = position[union]
            if (cols < 0).any():
                raise ValueError(
                    f"{name} holds only the {n_mask} mask voxels, but {(cols < 0).sum()} "
                    "searchlight neighbours lie outside the mask (threshold < 1); pass "
                    "truncate_at_boundary=True or the full volume (observations × "
                    f"{n_full} voxels)"
                )
            return np.asarray(data[:, cols], dtype=np.float64)
        raise ValueError(
            f"{name} has {data.shape[1]} columns; expected the {n_mask} mask voxels or all "
            f"{n_full} voxels of the mask's volume {tuple(mask_shape)}"
        )
    src = VolumeSource(betas, name)
    if src.shape != tuple(mask_shape):
        raise ValueError(f"{name} is on a grid of shape {src.shape}; the mask is "
                         f"{tuple(mask_shape)}: resample the mask to the data first")
    values = np.empty((src.n_volumes, union.size), dtype=np.float64)
    for start, block in src.iter_chunks(union):
        values[start : start + block.shape[0]] = block
    return values


def _n_rows(betas) -> int:
    if isinstance(betas, (np.ndarray, torch.Tensor)):
        return int(betas.shape[0])
    return VolumeSource(betas, "betas").n_volumes


def _fold_labels(cond_index: np.ndarray, runs: np.ndarray | None) -> np.ndarray:
    """Fold index per observation: the runs, or rsatoolbox's default (k-th repeat in fold k)."""
    if runs is not None:
        return np.unique(runs, return_inverse=True)[1].reshape(-1)
    fold = np.zeros(cond_index.size, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, c in enumerate(cond_index):
        fold[i] = seen.get(int(c), 0)
        seen[int(c)] = fold[i] + 1
    return fold


# ----------------------------------------------------------------------------- per-block kernels


def _finish_gram(gram, n, method, tri, out, clamp: bool = True) -> None:
    """RDM vectors into ``out`` from (centred) Grams: correlation distance, or the squared
    distance (g_ii + g_jj − 2 g_ij) / n (clamped at 0 unless ``clamp`` is False: cross-validated
    kernels give unbiased, possibly negative, distances); consumes ``gram``."""
    _, _, flat = tri
    b, c = gram.shape[:2]
    if method == "correlation":
        scale = torch.diagonal(gram, dim1=1, dim2=2).rsqrt()
        gram.mul_(scale[:, :, None]).mul_(scale[:, None, :])  # correlations
        torch.index_select(gram.view(b, c * c), 1, flat, out=out)
        out.neg_().add_(1.0)
    else:
        diag = torch.diagonal(gram, dim1=1, dim2=2).clone()
        ones = torch.ones_like(diag)
        # −2 G + d 1ᵀ + 1 dᵀ in one pass: a rank-2 update of the Gram
        left = torch.stack([diag, ones], dim=2)
        right = torch.stack([ones, diag], dim=1)
        gram.baddbmm_(left, right, beta=-2.0)
        torch.index_select(gram.view(b, c * c), 1, flat, out=out)
        if clamp:
            out.clamp_min_(0.0)
        out.div_(n[:, None])


def _triangle(n_cond: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row, column and flat indices of the upper triangle (k=1, row-major: squareform order)."""
    rows, cols = torch.triu_indices(n_cond, n_cond, offset=1, device=device)
    return rows, cols, rows * n_cond + cols


class _NoiseTables:
    """Per-voxel quantities of the residuals that do not depend on the searchlight.

    Rows are demeaned over rows once (as rsatoolbox's ``prec_from_residuals`` does per call); the
    variances, and what the shrinkage intensity needs beyond the covariance, are per voxel:
    ``z = x² / var`` and ``q = Σ_t z²``. With them the Schäfer–Strimmer intensity of a
    searchlight costs O(T·D) instead of a second (D × T)·(T × D) product (see
    :meth:`whitener`).
    """

    def __init__(self, rows: np.ndarray, dof: float, dtype, device) -> None:
        x = rows - rows.mean(0, keepdims=True)
        var = (x * x).sum(0) / dof
        self.n_rows, self.dof = x.shape[0], float(dof)
        pad = np.zeros((1, x.shape[0]))
        self.x = torch.as_tensor(np.concatenate([x.T, pad]), dtype=dtype, device=device)
        z = x * x / var
        self.z = torch.as_tensor(np.concatenate([z.T, pad]), dtype=dtype, device=device)
        self.q = torch.as_tensor(np.append((z * z).sum(0), 0.0), dtype=dtype, device=device)
        self.var = torch.as_tensor(np.append(var, 1.0), dtype=dtype, device=device)

    def whitener(self, idx: torch.Tensor, valid: torch.Tensor, method: str):
        """Per-searchlight noise model for the voxels ``idx`` (B, D), padding excluded.

        ``"diag"``: the (B, D) precisions 1 / var (1 on padding). ``"shrinkage_diag"``: the lower
        Cholesky factor (B, D, D) of rsatoolbox's shrinkage covariance (Schäfer & Strimmer,
        towards the diagonal), identity on padding; the precision is its inverse, so
        whitening is a triangular solve.
        """
        var = self.var[idx]
        if method == "diag":
            return 1.0 / var
        n, dof = self.n_rows, self.dof
        xb = self.x[idx]  # (B, D, T)
        s_sum = xb @ xb.transpose(1, 2)  # (B, D, D): the one product over rows
        inv_std = torch.where(valid, var.rsqrt(), torch.zeros_like(var))
        scaled = s_sum * inv_std[:, :, None] * inv_std[:, None, :]
        diag_sq = torch.diagonal(scaled, dim1=1, dim2=2).square().sum(1)
        a_off = scaled.square().sum((1, 2)) - diag_sq  # Σ_off s_ij² / (v_i v_j)
        s2_off = self.z[idx].sum(1).square().sum(1) - self.q[idx].sum(1)  # Σ_off s2_ij/(v_i v_j)
        s_mean_sq = a_off / (n - 1) ** 2
        var_hat = n / dof**2 * (s2_off / (n - 1) - s_mean_sq)
        lamb = (var_hat / s_mean_sq).clamp(0.0, 1.0)
        cov = s_sum.mul_((1.0 - lamb)[:, None, None] / dof)
        off = valid[:, :, None] & valid[:, None, :]
        cov = cov * off
        torch.diagonal(cov, dim1=1, dim2=2).copy_(var)  # var is 1 on padding
        return torch.linalg.cholesky(cov)


# ----------------------------------------------------------------------------- the main call


def searchlight_rdms(
    betas: ImageLike | Sequence[ImageLike] | np.ndarray,
    conditions: Any,
    runs: Any = None,
    *,
    mask: ImageLike | np.ndarray,
    radius: float = 3,
    method: str = "correlation",
    noise: Any = None,
    threshold: float = 1.0,
    min_voxels: int = 1,
    truncate_at_boundary: bool = False,
    noise_dof: int | None = None,
    noise_method: str = "shrinkage_diag",
    neighbourhoods: Neighbourhoods | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    memory_budget: float = 5e8,
    shard: tuple[int, int] | None = None,
    distributed: bool | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    stats: dict | None = None,
) -> Any:
    """Searchlight RDMs (one per centre) as rsatoolbox ``RDMs`` with a ``voxel_index`` descriptor.

    The same centres, neighbours and dissimilarities as rsatoolbox's ``get_volume_searchlight``
    + ``get_searchlight_RDMs`` (equal to 1e-6 in float64) for ``euclidean``, ``correlation`` and
    ``mahalanobis`` without noise; ``mahalanobis`` and ``crossnobis`` also take a noise precision
    estimated per searchlight (which rsatoolbox's searchlight cannot), equal to
    ``brainrdl.calc_rdm`` on each neighbourhood's Dataset with that searchlight's precision.

    Parameters
    ----------
    betas : 4D image, path, list of 3D images, or array
        Beta images (one volume per observation), or an ``(observations, voxels)`` array whose
        columns are either all voxels of the mask's volume (C order) or the mask voxels.
    conditions : array-like or path
        Condition label per observation, or a TSV with a ``condition`` (and ``run``) column.
    runs : array-like, optional
        Run label per observation: the cross-validation folds of ``crossnobis``. Without runs,
        rsatoolbox's default folds are used (the k-th repeat of each condition in fold k).
    mask : image, path or 3D array
        Brain mask on the data grid: the candidate centres.
    radius, threshold, truncate_at_boundary, min_voxels
        Neighbourhood definition, see :func:`searchlight_neighbourhoods`.
    method : {"correlation", "euclidean", "mahalanobis", "crossnobis"}
        Dissimilarity (rsatoolbox's names and scalings).
    noise : None, "shrinkage_diag", "diag", or residuals
        Noise precision per searchlight, for ``mahalanobis`` / ``crossnobis``. None: identity.
        ``"shrinkage_diag"`` or ``"diag"``: estimated from the spread of the betas around their
        condition means (rsatoolbox's ``prec_from_measurements``; every condition needs the same
        number of repeats). An ``(rows, voxels)`` array or 4D image of GLM residuals:
        ``prec_from_residuals`` of each searchlight's residuals with ``noise_method`` and
        ``noise_dof`` (default rows − 1).
    neighbourhoods : Neighbourhoods, optional
        Precomputed neighbourhoods (then radius/threshold/... are not used).
    device, dtype
        Where and in which precision to compute (default CPU, float64). On the CPU, the
        blocks without noise run on ``torch.get_num_threads()`` threads (set it with
        ``torch.set_num_threads``); the RDMs do not depend on the thread count.
    memory_budget : float, default 5e8
        Bytes of working memory per block of centres (the block size follows from it).
    shard : (i, n), optional
        Compute only the i-th of n contiguous parts of the centres (SLURM arrays); merge the
        parts with :func:`merge_searchlight_shards`.
    distributed : bool, optional
        Split the blocks over the ranks of an initialised ``torch.distributed`` process group
        and gather the result on every rank (default: when a group with > 1 rank exists).
        Blocks are the same as in one process, so the RDMs are identical.
    out : path, optional
        Stream the RDMs into this HDF5 file instead of memory; the path is returned (read with
        :func:`read_searchlight_rdms` / :func:`open_searchlight_rdms`).
    progress : bool, default True
        tqdm bar over blocks.
    stats : dict, optional
        Filled with diagnostics: ``block_size``, ``n_blocks`` (computed here), ``setup_s``
        (reading the data, tables) and ``blocks_s`` (the block loop), in seconds.

    Returns
    -------
    rsatoolbox.rdm.RDMs or pathlib.Path
        One RDM per centre; ``rdm_descriptors["voxel_index"]`` holds the centre's flat (C-order)
        index in the volume and ``pattern_descriptors["stimulus"]`` the sorted conditions.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((4, 4, 4), bool)
    >>> x = np.random.default_rng(0).normal(size=(6, 64))
    >>> rdms = searchlight_rdms(x, list("abcdef"), mask=mask, radius=2, progress=False)
    >>> rdms.n_rdm, rdms.n_cond, int(rdms.rdm_descriptors["voxel_index"][5])
    (64, 6, 5)
    """
    t_start = time.perf_counter()
    check_choice("method", method, METHODS)
    if noise is not None and method not in ("mahalanobis", "crossnobis"):
        raise ValueError(f"noise is only used by method='mahalanobis' or 'crossnobis'; "
                         f"got method={method!r}")
    check_choice("noise_method", noise_method, NOISE_METHODS)
    if isinstance(noise, str):
        check_choice("noise", noise, NOISE_METHODS)
    if not memory_budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes; got {memory_budget!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    mask_arr, affine = _mask_array(mask)
    if neighbourhoods is None:
        nb = searchlight_neighbourhoods(mask_arr, radius, threshold,
                                        truncate_at_boundary=truncate_at_boundary,
                                        min_voxels=min_voxels)
    else:
        if tuple(neighbourhoods.shape) != mask_arr.shape:
            raise ValueError(f"neighbourhoods are for a volume of shape {neighbourhoods.shape}; "
                             f"the mask is {mask_arr.shape}")
        nb = neighbourhoods
    if len(nb) == 0:
        raise ValueError("no searchlight centre passes the threshold; lower threshold or radius")
    if method == "correlation" and int(nb.sizes.min()) < 2:
        raise ValueError("correlation needs >= 2 voxels per searchlight; pass min_voxels=2")
    n_obs = _n_rows(betas)
    cond, run = volume_labels(conditions, runs, n_obs)
    labels, cond_index = np.unique(cond, return_inverse=True)
    cond_index = cond_index.reshape(-1)
    n_cond = labels.size
    if n_cond < 2:
        raise ValueError(f"conditions: an RDM needs >= 2 conditions; got {n_cond}")
    shard_part = _check_shard(shard)
    world, rank = _world(distributed)
    if shard_part is not None and world > 1:
        raise ValueError("shard and torch.distributed cannot be combined; use one of them")

    # the voxels any searchlight uses, read once; padding points at an extra zero column
    # (a boolean volume and a lookup table: ~10x faster than np.unique + searchsorted)
    used = np.zeros(int(np.prod(nb.shape)) + 1, dtype=bool)
    used[nb.indices] = True  # padding (-1) marks the extra last entry
    union = np.flatnonzero(used[:-1])
    del used
    data = _read_data(betas, mask_arr.shape, mask_arr.reshape(-1), union)
    bad = ~np.isfinite(data).all(0)
    if bad.any():
        raise ValueError(
            f"betas: {int(bad.sum())} voxels used by searchlights hold NaN or infinite values "
            f"(first at flat index {int(union[bad][0])}); restrict the mask to finite voxels"
        )
    # table row of every voxel of the volume; voxels no searchlight uses, and the padding (-1,
    # the last entry), point at the zero row U
    position = np.full(int(np.prod(nb.shape)) + 1, union.size, dtype=np.int64)
    position[union] = np.arange(union.size)
    columns = position[nb.indices]

    tables, balanced = None, False
    if noise is not None:
        rows, dof = _noise_rows(noise, noise_dof, data, cond_index, n_cond, mask_arr, union)
        tables = _NoiseTables(rows, dof, dtype, dev)
        del rows

    if method == "crossnobis":
        folds = _fold_labels(cond_index, run)
        n_folds = int(folds.max()) + 1
        if n_folds < 2:
            raise ValueError("crossnobis needs >= 2 runs (folds); got 1")
        counts = np.zeros((n_cond, n_folds))
        np.add.at(counts, (cond_index, folds), 1)
        if (counts == 0).any():
            c, f = np.argwhere(counts == 0)[0]
            raise ValueError(f"crossnobis: condition {labels[c]!r} has no observation in fold "
                             f"{f} (runs); every condition must occur in every run")
        sums = _group_sums(data, cond_index * n_folds + folds, n_cond * n_folds)
        sums = np.concatenate([sums, np.zeros((sums.shape[0], 1))], axis=1)
        sums = sums.reshape(n_cond, n_folds, union.size + 1)
        counts_t = torch.as_tensor(counts, dtype=dtype, device=dev)
        balanced = bool((counts == counts[0, 0]).all())
        if balanced:  # the usual design: Helmert-rotated fold means, see _helmert_tables
            table, between = _helmert_tables(sums / counts[0, 0], dtype, dev)
        else:
            table = torch.as_tensor(sums.transpose(2, 0, 1).copy(), dtype=dtype, device=dev)
        per_centre = 8 * (n_cond * n_folds * 4 + 3 * n_cond)
    else:
        means = _group_sums(data, cond_index, n_cond)
        means /= np.bincount(cond_index, minlength=n_cond)[:, None]
        # constants that leave the distances unchanged (see _gram_runs.GramRuns)
        if method == "correlation":
            means -= means.mean(1, keepdims=True)
        else:
            means -= means.mean(0, keepdims=True)
        means = np.concatenate([means, np.zeros((n_cond, 1))], axis=1)
        table = torch.as_tensor(means.T.copy(), dtype=dtype, device=dev)  # (U+1, C)
        counts_t = None
        per_centre = 8 * 4 * n_cond
    width = nb.indices.shape[1]
    per_centre = per_centre * width + 8 * 4 * n_cond * n_cond
    if tables is not None:
        per_centre += 8 * (2 * tables.n_rows * width + 6 * width * width)
    block = max(1, int(memory_budget // per_centre))
    del data

    n_pairs = n_cond * (n_cond - 1) // 2
    np_dtype = np.dtype("float64" if dtype == torch.float64 else "float32")
    # blocks are fixed by the budget alone, so a shard or a rank computes exactly the blocks a
    # single process would: the merged result is identical
    starts = list(range(0, len(nb), block))
    if shard_part is not None:
        lo, hi = _part(len(starts), *shard_part)
        mine = starts[lo:hi]
        rows = np.arange(mine[0], min(mine[-1] + block, len(nb))) if mine else np.arange(0)
    else:
        lo, hi = _part(len(starts), rank, world)
        mine, rows = starts[lo:hi], np.arange(len(nb))
    row0 = int(rows[0]) if rows.size else 0
    h5 = None
    if out is not None and world == 1:
        h5, result = _open_output(out, rows.size, n_pairs, block, np_dtype)
    else:
        result = np.zeros((rows.size, n_pairs), dtype=np_dtype)

    iterator = mine
    if progress:
        from tqdm import tqdm

        iterator = tqdm(mine, desc="searchlight RDMs", unit="block", leave=False)
    cols_all = torch.as_tensor(columns)
    noise_kind = noise if isinstance(noise, str) else noise_method
    tri = _triangle(n_cond, dev)
    row_len = int(np.prod(table.shape[1:]))
    plain_path = method != "crossnobis" and tables is None
    gather_buf = (None if plain_path else
                  torch.empty(min(block, len(nb)) * width * row_len, dtype=dtype, device=dev))
    if method == "crossnobis" and balanced:
        between_buf = torch.empty(min(block, len(nb)) * width * n_cond, dtype=dtype, device=dev)
    plain = None
    if plain_path:  # identity noise: Grams of the condition means (see _gram_runs)
        recurrence = None
        if nb.spherical:
            recurrence = (nb.centres, nb.shape, ball_offsets(nb.radius), position[:-1], block)
        plain = GramRuns(table, cols_all, nb.sizes,
                         "correlation" if method == "correlation" else "euclidean", recurrence)
    t_loop = time.perf_counter()
    if plain is not None and dev.type == "cpu" and isinstance(result, np.ndarray):
        # blocks are independent: torch's threads each take whole blocks (one op per thread
        # beats splitting each small op); every block's numbers are the same either way
        _parallel_blocks(plain, mine, block, len(nb), result, row0, iterator)
        iterator = []
    with torch.no_grad():
        for start in iterator:
            stop = min(start + block, len(nb))
            if plain is not None:
                vec = torch.empty((stop - start, n_pairs), dtype=dtype, device=dev)
                plain.block(start, stop, vec)
                result[start - row0 : stop - row0] = vec.cpu().numpy()
                continue
            sizes = nb.sizes[start:stop]
            w = int(sizes.max())
            idx = cols_all[start:stop, :w].to(dev)
            n = torch.as_tensor(sizes, dtype=dtype, device=dev)
            valid = torch.arange(w, device=dev)[None, :] < n[:, None]
            # (B, D, C) means, or (B, D, C, F) fold sums, gathered into a reused buffer
            y = gather_buf[: idx.numel() * row_len].view(idx.numel(), *table.shape[1:])
            torch.index_select(table, 0, idx.reshape(-1), out=y)
            y = y.view(*idx.shape, *table.shape[1:])
            if tables is not None:
                noise_model = tables.whitener(idx, valid, noise_kind)
                y = _whiten(y, noise_model)
            if method == "crossnobis" and balanced:
                yb = between_buf[: idx.numel() * n_cond].view(idx.numel(), n_cond)
                torch.index_select(between, 0, idx.reshape(-1), out=yb)
                yb = yb.view(*idx.shape, n_cond)
                if tables is not None:
                    yb = _whiten(yb, noise_model)
                # Σ_f train_f testᵀ_f = F m̄ m̄ᵀ − Σ_k r_k r_kᵀ / (F − 1) (brainrdl.rsa.crossnobis)
                kernel = torch.bmm(yb.transpose(1, 2), yb)
                yw = y.reshape(y.shape[0], -1, n_cond)  # (B, D·(F−1), C)
                kernel.sub_(torch.bmm(yw.transpose(1, 2), yw), alpha=1.0 / (n_folds - 1))
                target = torch.empty((stop - start, n_pairs), dtype=dtype, device=dev)
                _finish_gram(kernel, n * n_folds, "euclidean", tri, target, clamp=False)
                result[start - row0 : stop - row0] = target.cpu().numpy()
                continue
            if method == "crossnobis":
                sums_b = y.permute(0, 2, 3, 1)  # (B, C, F, D)
                rdm = crossnobis_from_fold_sums(sums_b, counts_t, None)
                vec = upper_tri(rdm).mul_((w / n)[:, None])
                result[start - row0 : stop - row0] = vec.cpu().numpy()
                continue
            # mahalanobis with a per-searchlight noise: squared distances of whitened patterns
            target = torch.empty((stop - start, n_pairs), dtype=dtype, device=dev)
            _finish_gram(torch.bmm(y.transpose(1, 2), y), n, "euclidean", tri, target)
            result[start - row0 : stop - row0] = target.cpu().numpy()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    if stats is not None:
        stats.update(block_size=block, n_blocks=len(mine), setup_s=t_loop - t_start,
                     blocks_s=time.perf_counter() - t_loop)
    if world > 1:
        result = _all_reduce_rows(result, len(nb), dev)
    if out is not None and world > 1:
        import torch.distributed as dist

        if rank == 0:
            h5, target = _open_output(out, len(nb), n_pairs, block, np_dtype)
            target[:] = result
        else:
            h5 = None
        if h5 is not None:
            _write_meta(h5, nb.centres, labels, method, nb, affine, None)
            h5.close()
        dist.barrier()
        return Path(out)
    if h5 is not None:
        _write_meta(h5, nb.centres[rows], labels, method, nb, affine, shard_part)
        path = Path(h5.filename)
        h5.close()
        return path
    return _as_rdms(result, nb.centres[rows], labels, method, nb, shard_part)


def _parallel_blocks(plain: GramRuns, starts, block, n_total, result, row0, progress) -> None:
    """Identity-noise blocks on the CPU, straight into ``result``, on ``torch.get_num_threads()``
    worker threads that each run single-threaded torch ops (restored afterwards)."""
    from concurrent.futures import ThreadPoolExecutor

    # pieces of CHUNK centres: the Gram runs restart there anyway (_gram_runs.run_starts)
    pieces = [(a, min(a + CHUNK, start + block, n_total)) for start in starts
              for a in range(start, min(start + block, n_total), CHUNK)]
    workers = max(1, min(torch.get_num_threads(), len(pieces)))
    bar = progress if hasattr(progress, "update") else None

    def one(piece: tuple[int, int]) -> None:
        lo, hi = piece
        if workers > 1:
            torch.set_num_threads(1)
        with torch.no_grad():
            plain.block(lo, hi, torch.from_numpy(result[lo - row0 : hi - row0]))

    def done(piece: tuple[int, int]) -> None:
        if bar is not None and (piece[1] == n_total or (piece[1] - starts[0]) % block == 0):
            bar.update(1)  # the last piece of a block

    if workers == 1:
        for piece in pieces:
            one(piece)
            done(piece)
    else:
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            with ThreadPoolExecutor(workers) as pool:
                for piece, _ in zip(pieces, pool.map(one, pieces)):
                    done(piece)
        finally:
            torch.set_num_threads(threads)
    if bar is not None:
        bar.close()


def _helmert_tables(means: np.ndarray, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel tables of the balanced crossnobis estimator from fold means (C, F, U+1).

    The fold axis is rotated onto F − 1 orthonormal (Helmert) contrasts r_k and the scaled mean
    √F·m̄, as ``brainrdl.rsa.crossnobis`` does per call; the rotation acts on folds and the
    noise whitening on voxels, so rotating once for all voxels is exact. The shared pattern
    across conditions is removed (distances do not change). Returns the contrasts as
    (U+1, F−1, C) and the scaled mean as (U+1, C).
    """
    n_folds = means.shape[1]
    rotation = np.zeros((n_folds, n_folds))
    for k in range(1, n_folds):
        rotation[k - 1, :k] = 1.0
        rotation[k - 1, k] = -float(k)
        rotation[k - 1] /= (k * (k + 1)) ** 0.5
    rotation[-1] = n_folds**-0.5
    z = np.einsum("kf,cfu->kcu", rotation, means)
    z -= z.mean(1, keepdims=True)
    within = torch.as_tensor(z[:-1].transpose(2, 0, 1).copy(), dtype=dtype, device=device)
    mean = torch.as_tensor(z[-1].T.copy(), dtype=dtype, device=device)
    return within, mean


def _group_sums(data: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, n_columns) sums of the rows of ``data`` per group (a sparse one-hot product)."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(group.size), (group, np.arange(group.size))),
                        shape=(n_groups, group.size))
    return np.asarray(onehot @ data)


def _whiten(y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Channels (dim 1 of y, (B, D, ...)) multiplied by a factor W of the precision, P = W Wᵀ.

    Then x P yᵀ = (x W)(y W)ᵀ: every noise-weighted distance becomes a plain one, computed by
    the fast identity-noise routes (for crossnobis: two symmetric Grams). A diagonal precision
    (B, D) scales by √p; a Cholesky factor L of the covariance (B, D, D) gives W = L⁻ᵀ, applied
    as the triangular solve L⁻¹ y (no inverse is formed).
    """
    if noise.ndim == 2:
        return y * noise.sqrt().reshape(*noise.shape, *([1] * (y.ndim - 2)))
    flat = y.reshape(y.shape[0], y.shape[1], -1)  # (B, D, K)
    return torch.linalg.solve_triangular(noise, flat, upper=False).reshape(y.shape)


def _noise_rows(noise, noise_dof, data, cond_index, n_cond, mask_arr, union):
    """Residual rows (T, U) and their degrees of freedom for the per-searchlight noise."""
    if isinstance(noise, str):
        counts = np.bincount(cond_index, minlength=n_cond)
        if (counts != counts[0]).any() or counts[0] < 2:
            raise ValueError(
                f"noise={noise!r} estimates the noise from repeated betas: every condition needs "
                f"the same number (>= 2) of repeats; got counts {sorted(set(counts.tolist()))}"
            )
        means = _group_sums(data, cond_index, n_cond)
        means /= counts[:, None]
        # rsatoolbox's prec_from_measurements: deviations from the condition means,
        # dof = (n_conditions − 1) · n_repeats (its convention)
        return data - means[cond_index], (n_cond - 1) * int(counts[0])
    rows = _read_data(noise, mask_arr.shape, mask_arr.reshape(-1), union, name="noise")
    if not np.isfinite(rows).all():
        raise ValueError("noise: the residuals hold NaN or infinite values in searchlight voxels")
    dof = rows.shape[0] - 1 if noise_dof is None else int(noise_dof)
    if dof < 1:
        raise ValueError(f"noise_dof must be >= 1; got {dof}")
    return rows, dof


def _check_shard(shard) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (i, n) with 0 <= i < n; got {shard!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard must be a pair (i, n) with 0 <= i < n; got {shard!r}")
    return i, n


def _part(n_items: int, i: int, n: int) -> tuple[int, int]:
    """The i-th of n contiguous, near-equal parts of range(n_items)."""
    return n_items * i // n, n_items * (i + 1) // n


def _world(distributed: bool | None) -> tuple[int, int]:
    import torch.distributed as dist

    active = dist.is_available() and dist.is_initialized()
    if distributed and not active:
        raise ValueError("distributed=True needs an initialised torch.distributed process group "
                         "(run under torchrun, or call torch.distributed.init_process_group)")
    if distributed is False or not active:
        return 1, 0
    return dist.get_world_size(), dist.get_rank()


def _all_reduce_rows(result, n_total, dev) -> np.ndarray:
    """Every rank holds the rows of its blocks (zeros elsewhere); a SUM all-reduce assembles
    the full result on each rank. Adding zeros is exact, so the merge is bit-identical."""
    import torch.distributed as dist

    backend = dist.get_backend()
    comm_dev = dev if backend == "nccl" else torch.device("cpu")
    step = max(1, (64 * 2**20) // max(1, result.shape[1] * result.itemsize))
    for a in range(0, n_total, step):
        chunk = torch.from_numpy(np.ascontiguousarray(result[a : a + step])).to(comm_dev)
        dist.all_reduce(chunk, op=dist.ReduceOp.SUM)
        result[a : a + step] = chunk.cpu().numpy()
    return result


# ----------------------------------------------------------------------------- output


def _as_rdms(dissimilarities, centres, labels, method, nb, shard_part):
    from rsatoolbox.rdm import RDMs

    return RDMs(
        dissimilarities,
        dissimilarity_measure=method,
        descriptors=_descriptors(nb, shard_part),
        rdm_descriptors={"voxel_index": np.asarray(centres)},
        pattern_descriptors={"stimulus": np.asarray(labels)},
    )


def _descriptors(nb: Neighbourhoods, shard_part) -> dict:
    desc = {"radius": nb.radius, "threshold": nb.threshold, "volume_shape": list(nb.shape)}
    if shard_part is not None:
        desc["shard"] = list(shard_part)
    return desc


def _open_output(out, n_rows, n_pairs, block, dtype):
    import h5py

    h5 = h5py.File(out, "w")
    chunk_rows = max(1, min(n_rows, block, max(1, 2**22 // max(1, n_pairs * dtype.itemsize))))
    ds = h5.create_dataset("dissimilarities", shape=(n_rows, n_pairs), dtype=dtype,
                           chunks=(chunk_rows, n_pairs) if n_rows else None)
    return h5, ds


def _write_meta(h5, centres, labels, method, nb, affine, shard_part) -> None:
    h5.create_dataset("voxel_index", data=np.asarray(centres, dtype=np.int64))
    h5.create_dataset("stimulus", data=np.asarray([str(v) for v in labels], dtype="S"))
    h5.attrs["dissimilarity_measure"] = method
    h5.attrs["radius"] = nb.radius
    h5.attrs["threshold"] = nb.threshold
    h5.attrs["volume_shape"] = np.asarray(nb.shape, dtype=np.int64)
    h5.attrs["n_centres_total"] = len(nb)
    if affine is not None:
        h5.attrs["affine"] = np.asarray(affine, dtype=np.float64)
    if shard_part is not None:
        h5.attrs["shard"] = np.asarray(shard_part, dtype=np.int64)


class SearchlightRDMsFile:
    """Searchlight RDMs in an HDF5 file, read lazily: ``dissimilarities`` is an h5py dataset.

    Enough of the rsatoolbox ``RDMs`` interface for ``brainrdl.searchlight_map``
    (``dissimilarities``, ``rdm_descriptors["voxel_index"]``, ``pattern_descriptors``,
    ``dissimilarity_measure``, ``n_rdm``, ``n_cond``) without loading the RDMs into memory.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"searchlight RDMs: no such file {str(path)!r}")
        self.file = h5py.File(path, "r")
        for key in ("dissimilarities", "voxel_index", "stimulus"):
            if key not in self.file:
                raise ValueError(f"{str(path)!r} is not a searchlight RDMs file (no {key!r})")
        self.dissimilarities = self.file["dissimilarities"]
        self.rdm_descriptors = {"voxel_index": self.file["voxel_index"][()]}
        self.pattern_descriptors = {
            "stimulus": np.asarray([s.decode() for s in self.file["stimulus"][()]])}
        self.dissimilarity_measure = str(self.file.attrs["dissimilarity_measure"])
        self.attrs = dict(self.file.attrs)
        self.n_rdm = int(self.dissimilarities.shape[0])
        self.n_cond = int(self.pattern_descriptors["stimulus"].size)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> SearchlightRDMsFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_searchlight_rdms(path: str | os.PathLike) -> SearchlightRDMsFile:
    """Open an HDF5 file written by :func:`searchlight_rdms` (``out=``) without loading it.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "sl.h5"
    >>> _ = searchlight_rdms(np.random.default_rng(0).normal(size=(4, 27)), list("abcd"),
    ...                      mask=np.ones((3, 3, 3)), radius=2, out=out, progress=False)
    >>> with open_searchlight_rdms(out) as f:
    ...     f.n_rdm, f.dissimilarities.shape
    (27, (27, 6))
    """
    return SearchlightRDMsFile(path)


def read_searchlight_rdms(path: str | os.PathLike) -> Any:
    """Load an HDF5 file written by :func:`searchlight_rdms` as rsatoolbox ``RDMs``.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "sl.h5"
    >>> _ = searchlight_rdms(np.random.default_rng(0).normal(size=(4, 27)), list("abcd"),
    ...                      mask=np.ones((3, 3, 3)), radius=2, out=out, progress=False)
    >>> read_searchlight_rdms(out).n_rdm
    27
    """
    from rsatoolbox.rdm import RDMs

    with SearchlightRDMsFile(path) as f:
        desc = {"radius": float(f.attrs["radius"]), "threshold": float(f.attrs["threshold"]),
                "volume_shape": [int(v) for v in f.attrs["volume_shape"]]}
        return RDMs(f.dissimilarities[()], dissimilarity_measure=f.dissimilarity_measure,
                    descriptors=desc, rdm_descriptors=dict(f.rdm_descriptors),
                    pattern_descriptors=dict(f.pattern_descriptors))


def merge_searchlight_shards(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike
) -> Path:
    """Concatenate the HDF5 shards of ``searchlight_rdms(..., shard=(i, n), out=...)``.

    Checks that the shards belong together (same conditions, measure, volume, number of
    shards, each shard index once) and that together they hold every centre once.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> x, mask = np.random.default_rng(0).normal(size=(4, 27)), np.ones((3, 3, 3))
    >>> parts = [searchlight_rdms(x, list("abcd"), mask=mask, radius=2, shard=(i, 2),
    ...                           memory_budget=2e4, out=d / f"p{i}.h5", progress=False)
    ...          for i in range(2)]
    >>> read_searchlight_rdms(merge_searchlight_shards(parts, d / "all.h5")).n_rdm
    27
    """
    import h5py

    if not paths:
        raise ValueError("paths is empty; expected the shard files")
    files = [SearchlightRDMsFile(p) for p in paths]
    try:
        shards = []
        for p, f in zip(paths, files):
            if "shard" not in f.attrs:
                raise ValueError(f"{str(p)!r} is not a shard (written without shard=(i, n))")
            shards.append(tuple(int(v) for v in f.attrs["shard"]))
        n = shards[0][1]
        if sorted(shards) != [(i, n) for i in range(n)]:
            raise ValueError(f"shards {sorted(shards)} are not exactly the parts 0..{n - 1} of {n}")
        first = files[0]
        for p, f in zip(paths, files):
            if (not np.array_equal(f.pattern_descriptors["stimulus"],
                                   first.pattern_descriptors["stimulus"])
                    or f.dissimilarity_measure != first.dissimilarity_measure
                    or not np.array_equal(f.attrs["volume_shape"], first.attrs["volume_shape"])):
                raise ValueError(f"{str(p)!r} does not belong with {str(paths[0])!r} "
                                 "(conditions, measure or volume differ)")
        order = [files[shards.index((i, n))] for i in range(n)]
        total = sum(f.n_rdm for f in order)
        if total != int(first.attrs["n_centres_total"]):
            raise ValueError(f"the shards hold {total} centres; expected "
                             f"{int(first.attrs['n_centres_total'])}")
        with h5py.File(out, "w") as h5:
            ds = h5.create_dataset("dissimilarities", shape=(total, first.dissimilarities.shape[1]),
                                   dtype=first.dissimilarities.dtype,
                                   chunks=first.dissimilarities.chunks)
            row = 0
            for f in order:
                step = max(1, 2**25 // max(1, f.dissimilarities.shape[1] * 8))
                for a in range(0, f.n_rdm, step):
                    block = f.dissimilarities[a : a + step]
                    ds[row + a : row + a + block.shape[0]] = block
                row += f.n_rdm
            h5.create_dataset("voxel_index",
                                data=np.concatenate([f.rdm_descriptors["voxel_index"]
                                                   for f in order]))
            h5.create_dataset("stimulus", data=first.file["stimulus"][()])
            for key, value in first.attrs.items():
                if key != "shard":
                    h5.attrs[key] = value
        return Path(out)
    finally:
        for f in files:
            f.close()
