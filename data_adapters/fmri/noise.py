"""Noise precision matrices for Mahalanobis / crossnobis RDMs, from GLM residuals or repeated betas.

Both estimators give rsatoolbox's numbers (``prec_from_residuals``, ``prec_from_measurements``);
the default shrinkage estimate is computed with matrix products instead of rsatoolbox's loop.

Examples
--------
>>> r = np.random.default_rng(0).normal(size=(50, 4))
>>> precision_from_residuals(r).shape
(4, 4)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainrdl.errors import InvalidArgumentError

__all__ = ["noise_from_measurements", "precision_from_residuals"]


def precision_from_residuals(
    residuals: np.ndarray, dof: int | None = None, method: str = "shrinkage_diag"
) -> np.ndarray:
    """Noise precision from residuals: rsatoolbox's ``prec_from_residuals``, faster.

    For ``"shrinkage_diag"`` (Schäfer & Strimmer shrinkage towards the diagonal) the same
    estimate as rsatoolbox is computed with two matrix products instead of rsatoolbox's loop of
    outer products (which took ~20 s per 1,400-voxel ROI with 800 rows); other methods are
    passed to rsatoolbox unchanged.

    Parameters
    ----------
    residuals : numpy.ndarray
        ``(n_rows, n_channels)``; demeaned over rows here, as rsatoolbox does.
    dof : int, optional
        Degrees of freedom (default ``n_rows - 1``); pass ``n_rows - n_regressors`` for GLM
        residuals.
    method : str, default "shrinkage_diag"
        Any method of ``rsatoolbox.data.noise.prec_from_residuals``.

    Examples
    --------
    >>> from rsatoolbox.data.noise import prec_from_residuals
    >>> r = np.random.default_rng(0).normal(size=(50, 4))
    >>> bool(np.allclose(precision_from_residuals(r), prec_from_residuals(r)))
    True
    """
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.ndim != 2:
        raise InvalidArgumentError(
            f"residuals must be 2D (rows, channels); got shape {residuals.shape}")
    if method != "shrinkage_diag":
        from rsatoolbox.data.noise import prec_from_residuals

        return np.asarray(prec_from_residuals(residuals, dof=dof, method=method))
    x = residuals - residuals.mean(axis=0, keepdims=True)
    n = x.shape[0]
    dof = n - 1 if dof is None else dof
    s_sum = x.T @ x
    x2 = x * x
    s2_sum = x2.T @ x2
    s = s_sum / dof
    var = np.diag(s)
    std = np.sqrt(var)
    s_mean = s_sum / std[None, :] / std[:, None] / (n - 1)
    s2_mean = s2_sum / var[None, :] / var[:, None] / (n - 1)
    var_hat = n / dof**2 * (s2_mean - s_mean**2)
    off = ~np.eye(s.shape[0], dtype=bool)
    lamb = float(np.clip(var_hat[off].sum() / (s_mean[off] ** 2).sum(), 0.0, 1.0))
    shrunk = s * (1.0 - lamb)
    shrunk[np.diag_indices_from(shrunk)] = var
    return np.linalg.inv(shrunk)


def noise_from_measurements(
    dataset: Any, descriptor: str = "stimulus", method: str = "shrinkage_diag"
) -> np.ndarray:
    """Noise precision from the spread of repeated betas around their condition means.

    The same estimate as ``rsatoolbox.data.noise.prec_from_measurements`` (shrinkage by
    default), the usual choice when only betas, not GLM residuals, are available; for
    ``"shrinkage_diag"`` it is computed with matrix products (see
    :func:`precision_from_residuals`), much faster than rsatoolbox's loop for large ROIs.

    Examples
    --------
    >>> import numpy as np
    >>> from rsatoolbox.data import Dataset
    >>> ds = Dataset(np.random.default_rng(0).normal(size=(8, 3)),
    ...              obs_descriptors={"stimulus": np.repeat([0, 1], 4)})
    >>> noise_from_measurements(ds).shape
    (3, 3)
    """
    if method != "shrinkage_diag":
        from rsatoolbox.data.noise import prec_from_measurements

        return np.asarray(prec_from_measurements(dataset, obs_desc=descriptor, method=method))
    # rsatoolbox's layout: (n_conditions, n_channels, n_repeats), deviations from each
    # condition's mean over repeats, dof = (n_conditions - 1) * n_repeats (its convention)
    tensor, _ = dataset.get_measurements_tensor(descriptor)
    tensor = tensor - tensor.mean(axis=2, keepdims=True)
    dof = (tensor.shape[0] - 1) * tensor.shape[2]
    matrix = tensor.transpose(0, 2, 1).reshape(-1, tensor.shape[1])
    return precision_from_residuals(matrix, dof=dof)
