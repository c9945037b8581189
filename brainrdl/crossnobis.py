"""Cross-validated dissimilarities (crossnobis, cross-validated Poisson KL) from per-fold Grams.

A cross-validated RDM averages, over folds f, the symmetrised cross kernel
``K_f = A_f B_fᵀ`` (A_f: one estimate of the condition patterns, B_f: an independent one):

    d_ij = mean_f (K_f[i, i] + K_f[j, j] − K_f[i, j] − K_f[j, i]) / D.

Stacking the folds side by side turns ``Σ_f A_f B_fᵀ`` into ONE matrix product of shape
(n, F·D) × (F·D, n), and the diagonal terms into a row-wise dot product: no loop over condition
pairs, no (n, n, D) tensor, and about the cost of the Gram matrix of an (n, F·D) pattern matrix.
"""

from __future__ import annotations

import torch

from brainrdl.distances import _zero_diagonal


def cross_fold_rdm(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Mean over folds of the symmetrised cross-kernel RDM, from stacked fold estimates.

    Parameters
    ----------
    left, right
        Tensors of shape (..., n_conditions, n_folds, n_channels): for fold f,
        ``left[..., :, f]`` is A_f (already multiplied by the noise precision when there is one)
        and ``right[..., :, f]`` is B_f.

    Returns
    -------
    torch.Tensor
        Square (..., n, n) RDM, ``mean_f (K_f[i,i] + K_f[j,j] − K_f[i,j] − K_f[j,i]) / D``.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]])  # 2 conditions, 1 fold, 2 channels
    >>> cross_fold_rdm(a, a)[0, 1].item()  # equals the squared euclidean distance / D
    1.0
    """
    if left.shape != right.shape or left.ndim < 3:
        raise ValueError(
            "left and right must both have shape (..., n_conditions, n_folds, n_channels); "
            f"got {tuple(left.shape)} and {tuple(right.shape)}"
        )
    n_folds, d = left.shape[-2:]
    flat_left = left.reshape(*left.shape[:-2], n_folds * d)
    flat_right = right.reshape(*right.shape[:-2], n_folds * d)
    cross = flat_left @ flat_right.transpose(-1, -2)  # Σ_f A_f B_fᵀ: the one GEMM
    diag = (flat_left * flat_right).sum(dim=-1)  # Σ_f K_f[i, i]
    scale = d * n_folds
    if torch.is_grad_enabled() and cross.requires_grad:
        rdm = diag.unsqueeze(-1) + diag.unsqueeze(-2) - cross - cross.transpose(-1, -2)
        return _zero_diagonal(rdm) / scale
    rdm = cross.transpose(-1, -2).add(cross).neg_()  # no grad: finish in place
    rdm.add_(diag.unsqueeze(-1)).add_(diag.unsqueeze(-2))
    return _zero_diagonal(rdm).div_(scale)


def apply_precision(patterns: torch.Tensor, precision: torch.Tensor | None) -> torch.Tensor:
    """Multiply patterns (..., D) by a noise precision: None (identity), (D,) diagonal or (D, D).

    Examples
    --------
    >>> import torch
    >>> apply_precision(torch.ones(2, 3), torch.tensor([1.0, 2.0, 3.0]))[0].tolist()
    [1.0, 2.0, 3.0]
    """
    if precision is None:
        return patterns
    if precision.ndim == 1:
        return patterns * precision
    return patterns @ precision


def leave_one_out_means(
    sums: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-fold test means and leave-that-fold-out train means from per-fold sums.

    Parameters
    ----------
    sums
        (n_conditions, n_folds, n_channels) sums of the observations of each condition in each fold.
    counts
        (n_conditions, n_folds) number of observations summed; every entry must be > 0.

    Returns
    -------
    train, test
        (n_conditions, n_folds, n_channels): ``test[:, f]`` is the mean of fold f and
        ``train[:, f]`` the mean over all observations of the other folds (as rsatoolbox averages
        a training set: observation-weighted, not a mean of fold means).

    Examples
    --------
    >>> import torch
    >>> sums = torch.tensor([[[1.0], [3.0], [8.0]]])  # 1 condition, 3 folds (one obs in each)
    >>> train, test = leave_one_out_means(sums, torch.ones(1, 3))
    >>> train[0, :, 0].tolist(), test[0, :, 0].tolist()
    ([5.5, 4.5, 2.0], [1.0, 3.0, 8.0])
    """
    counts = counts.unsqueeze(-1).to(sums.dtype)
    total = sums.sum(dim=-2, keepdim=True)
    total_count = counts.sum(dim=-2, keepdim=True)
    test = sums / counts
    train = (total - sums) / (total_count - counts)
    return train, test


def crossnobis_from_fold_sums(
    sums: torch.Tensor,
    counts: torch.Tensor,
    precision: torch.Tensor | None = None,
    *,
    remove_mean: bool = False,
) -> torch.Tensor:
    """Leave-one-fold-out crossnobis RDM with one noise precision (rsatoolbox's estimator).

    For each fold f, the training mean over the other folds is compared with the fold's own
    mean through ``K_f = train_f P test_fᵀ``; the RDM is the mean over folds (see module doc).

    Examples
    --------
    >>> import torch
    >>> sums = torch.tensor([[[0.0], [0.0]], [[2.0], [2.0]]])  # 2 conditions, 2 folds, 1 channel
    >>> crossnobis_from_fold_sums(sums, torch.ones(2, 2))[0, 1].item()
    4.0
    """
    train, test = leave_one_out_means(sums, counts)
    if remove_mean:
        train = train - train.mean(dim=-1, keepdim=True)
        test = test - test.mean(dim=-1, keepdim=True)
    return cross_fold_rdm(train, apply_precision(test, precision))


def crossnobis_fold_pairs(
    means: torch.Tensor, precisions: torch.Tensor, *, remove_mean: bool = False
) -> torch.Tensor:
    """Crossnobis RDM with one noise precision per fold (rsatoolbox's list-of-noises estimator).

    Every unordered pair of folds (k < l) is compared through ``m_k P_kl m_lᵀ`` with
    ``P_kl = ((P_k⁻¹ + P_l⁻¹) / 2)⁻¹``; the RDM is the mean over pairs.

    Parameters
    ----------
    means
        (n_conditions, n_folds, n_channels) per-fold condition means.
    precisions
        (n_folds, D, D) per-fold precisions of the fold means.

    Examples
    --------
    >>> import torch
    >>> means = torch.tensor([[[0.0], [0.0]], [[2.0], [2.0]]], dtype=torch.float64)
    >>> crossnobis_fold_pairs(means, torch.ones(2, 1, 1, dtype=torch.float64))[0, 1].item()
    4.0
    """
    if remove_mean:
        means = means - means.mean(dim=-1, keepdim=True)
    n_folds = means.shape[-2]
    first, second = torch.triu_indices(n_folds, n_folds, offset=1, device=means.device)
    variances = torch.linalg.inv(precisions)
    pair_var = (variances[first] + variances[second]) / 2  # (n_pairs, D, D)
    pair_prec = torch.linalg.inv(pair_var)
    # left[:, p] = m_k P_kl for pair p = (k, l): one batched GEMM over pairs.
    left = torch.einsum("npd,pde->npe", means[:, first], pair_prec)
    return cross_fold_rdm(left, means[:, second])


def poisson_cv_from_fold_sums(
    sums: torch.Tensor,
    counts: torch.Tensor,
    prior_lambda: float = 1.0,
    prior_weight: float = 0.1,
) -> torch.Tensor:
    """Cross-validated symmetrised Poisson KL divergence, averaged over ALL leave-one-out folds.

    Rates r = (mean + prior_lambda·prior_weight) / (1 + prior_weight) of the training set (other
    folds) are paired with the log rates of the held-out fold, ``K_f = r_train,f · log(r_test,f)ᵀ``,
    and ``d_ij = mean_f (K_f[i,i] + K_f[j,j] − K_f[i,j] − K_f[j,i]) / D``.

    Examples
    --------
    >>> import torch
    >>> sums = torch.tensor([[[1.0], [1.0]], [[3.0], [3.0]]])  # identical folds
    >>> round(poisson_cv_from_fold_sums(sums, torch.ones(2, 2))[0, 1].item(), 6)  # = poisson
    1.883803
    """
    train, test = leave_one_out_means(sums, counts)
    shift = prior_lambda * prior_weight
    scale = 1.0 + prior_weight
    train_rates = (train + shift) / scale
    test_rates = (test + shift) / scale
    if bool((test_rates <= 0).any()):
        raise ValueError(
            "data: poisson_cv needs (prior-shrunk) rates > 0; got fold means ≤ "
            f"-prior_lambda*prior_weight = {-shift}"
        )
    return cross_fold_rdm(train_rates, torch.log(test_rates))
