"""Cross-validated dissimilarities (crossnobis, cross-validated Poisson KL) from per-fold Grams.

A cross-validated RDM averages, over folds f, the symmetrised cross kernel
``K_f = A_f B_fᵀ`` (A_f: one estimate of the condition patterns, B_f: an independent one):

    d_ij = mean_f (K_f[i, i] + K_f[j, j] − K_f[i, j] − K_f[j, i]) / D.

Stacking the folds side by side turns ``Σ_f A_f B_fᵀ`` into ONE matrix product of shape
(n, F·D) × (F·D, n), and the diagonal terms into a row-wise dot product: no loop over condition
pairs, no (n, n, D) tensor, and about the cost of the Gram matrix of an (n, F·D) pattern matrix.

Balanced folds (every condition has the same number of observations in each fold; the usual
design) allow a cheaper, exactly equivalent form of rsatoolbox's leave-one-fold-out estimator.
With fold means m_f, their mean m̄ = S / F (S = Σ_f m_f) and residuals r_f = m_f − m̄, the training
mean of fold f is (S − m_f) / (F − 1), and

    Σ_f train_f P test_fᵀ = (S P Sᵀ − Σ_f m_f P m_fᵀ) / (F − 1)
                         = F · m̄ P m̄ᵀ − Σ_f r_f P r_fᵀ / (F − 1),

two SYMMETRIC Grams: one of m̄ (n × D) and one of the residuals. The residuals span F − 1
dimensions per channel, so they are first rotated onto F − 1 orthonormal contrasts (Helmert):
the Gram of an (n, (F−1)·D) matrix. With a diagonal precision p > 0 both are scaled by √p.
The symmetric Gram (syrk) costs half a general product, so the whole estimator costs about
n²·F·D multiply-adds: half of ONE bare product of the stacked (n, F·D) patterns, against
rsatoolbox's F products of train and test (plus its F·n·D² precision products). The second
form subtracts the between-fold noise Gram explicitly, which keeps the numbers well conditioned.
"""

from __future__ import annotations

import torch

from brainrdl.errors import DegenerateDataError, InvalidArgumentError
from brainrdl.rsa.distances import _gram, _zero_diagonal


def cross_fold_rdm(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Mean over folds of the symmetrised cross-kernel RDM, from stacked fold estimates.

    Parameters
    ----------
    left, right : torch.Tensor
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
        raise InvalidArgumentError(
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
    sums : torch.Tensor
        (n_conditions, n_folds, n_channels) sums of the observations of each condition in each fold.
    counts : torch.Tensor
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
    >>> round(crossnobis_from_fold_sums(sums, torch.ones(2, 2))[0, 1].item(), 6)
    4.0
    """
    if _balanced(counts) and _symmetric_precision(precision):
        return _crossnobis_balanced(sums, counts, precision, remove_mean=remove_mean)
    train, test = leave_one_out_means(sums, counts)
    if remove_mean:
        train = train - train.mean(dim=-1, keepdim=True)
        test = test - test.mean(dim=-1, keepdim=True)
    return cross_fold_rdm(train, apply_precision(test, precision))


def _balanced(counts: torch.Tensor) -> bool:
    """Every condition has the same number of observations in each of its folds."""
    return bool((counts == counts[..., :1]).all())


def _symmetric_precision(precision: torch.Tensor | None) -> bool:
    """None (identity) or a positive (D,) diagonal: weights √p make every Gram symmetric."""
    return precision is None or (precision.ndim == 1 and bool((precision > 0).all()))


def _fold_rotation(n_folds: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(F, F) orthonormal rotation of the fold axis: rows 0..F−2 are Helmert contrasts
    (orthogonal to the ones vector), the last row is ones / √F (the fold sum, scaled)."""
    q = torch.zeros(n_folds, n_folds, dtype=torch.float64)
    for k in range(1, n_folds):
        q[k - 1, :k] = 1.0
        q[k - 1, k] = -float(k)
        q[k - 1] /= (k * (k + 1)) ** 0.5
    q[-1] = n_folds**-0.5
    return q.to(dtype=dtype, device=device)


def _crossnobis_balanced(
    sums: torch.Tensor,
    counts: torch.Tensor,
    precision: torch.Tensor | None,
    *,
    remove_mean: bool,
) -> torch.Tensor:
    """rsatoolbox's leave-one-fold-out crossnobis from per-fold sums of balanced folds.

    ``sums`` is (..., n, F, D), ``counts`` (..., n, F) with every row constant (each condition
    has the same number of observations in each fold); ``precision`` None or a positive (D,)
    diagonal. Uses ``Σ_f train_f P test_fᵀ = F·m̄ P m̄ᵀ − Σ_f r_f P r_fᵀ / (F − 1)`` (see the
    module doc): one rotation of the fold axis, then two symmetric Grams, together about half
    the multiply-adds of one (n, F·D) product. Never modifies ``sums``.

    Examples
    --------
    >>> import torch
    >>> sums = torch.tensor([[[0.0], [0.0]], [[1.0], [3.0]]], dtype=torch.float64)
    >>> counts = torch.ones(2, 2)
    >>> # (1 − 0)(3 − 0), as the folds give
    >>> round(_crossnobis_balanced(sums, counts, None, remove_mean=False)[0, 1].item(), 6)
    3.0
    """
    n_folds, d = sums.shape[-2:]
    inplace = _untracked(sums, precision)
    # (..., n, 1, 1): observations of each condition per fold (the same in every fold)
    per_cond = counts[..., :1, None].to(sums.dtype)
    rotation = _fold_rotation(n_folds, sums.dtype, sums.device)
    same_count = bool(per_cond.amin() == per_cond.amax())
    if same_count:  # the usual design: fold the 1/count of the means into the rotation
        rotation = rotation / per_cond.amax()
    # z[..., :F−1, :] = residual contrasts (Σ_f r_f r_fᵀ = Σ_k z_k z_kᵀ), z[..., F−1, :] = √F·m̄:
    # ONE pass over the data
    z = rotation @ sums
    if not same_count:
        z = z.div_(per_cond) if inplace else z / per_cond
    z = _centre_and_weight(z, -3, precision, remove_mean, inplace)
    within = _gram(z[..., : n_folds - 1, :].reshape(*z.shape[:-2], (n_folds - 1) * d))
    between = _gram(z[..., n_folds - 1, :])
    return _rdm_from_kernels(between, within, n_folds, d, inplace)


def crossnobis_fold_major(
    means: torch.Tensor, precision: torch.Tensor | None = None, *, remove_mean: bool = False
) -> torch.Tensor:
    """Crossnobis RDM from fold-major per-fold condition means (F, n, D), rsatoolbox's estimator.

    For balanced designs (each condition has the same number of observations in every fold),
    where rsatoolbox's leave-one-fold-out training mean is the mean of the other folds' means.
    ``precision``: None (identity), a (D,) diagonal, or a (D, D) matrix. With None or a positive
    diagonal the fold axis is rotated by ONE (F × F)·(F × n·D) product and the RDM comes from
    two symmetric Grams (see the module doc); otherwise the general leave-one-out product is used.
    Fold-major rows are what a run-by-run design stores (``measurements.reshape(F, n, D)``).

    Examples
    --------
    >>> import torch
    >>> means = torch.tensor([[[0.0], [1.0]], [[0.0], [3.0]]], dtype=torch.float64)  # 2 folds
    >>> round(crossnobis_fold_major(means)[0, 1].item(), 6)
    3.0
    """
    if means.ndim != 3 or means.shape[0] < 2:
        raise InvalidArgumentError(
            "means must have shape (n_folds >= 2, n_conditions, n_channels); "
            f"got {tuple(means.shape)}"
        )
    n_folds, n, d = means.shape
    if not _symmetric_precision(precision):
        sums = means.transpose(0, 1)
        counts = torch.ones(n, n_folds, dtype=means.dtype, device=means.device)
        return crossnobis_from_fold_sums(sums, counts, precision, remove_mean=remove_mean)
    inplace = _untracked(means, precision)
    rotation = _fold_rotation(n_folds, means.dtype, means.device)
    z = (rotation @ means.reshape(n_folds, n * d)).view(n_folds, n, d)  # one GEMM
    z = _centre_and_weight(z, -2, precision, remove_mean, inplace)
    within = _gram(z[0])
    for k in range(1, n_folds - 1):
        within = within.add_(_gram(z[k])) if inplace else within + _gram(z[k])
    between = _gram(z[n_folds - 1])
    return _rdm_from_kernels(between, within, n_folds, d, inplace)


def _untracked(x: torch.Tensor, precision: torch.Tensor | None) -> bool:
    """Whether autograd records nothing here, so intermediate results may be updated in place."""
    return not (torch.is_grad_enabled() and (
        x.requires_grad or (precision is not None and precision.requires_grad)))


def _centre_and_weight(z, cond_dim, precision, remove_mean, inplace):
    """remove_mean (each pattern's mean over channels, as rsatoolbox: linear, so it commutes with
    the fold rotation), then remove the pattern shared by all conditions and weight by √p.

    The shared pattern (per fold component) leaves every distance unchanged; removing it keeps
    the Grams to what differs between conditions (no cancellation). One pass when in place.
    """
    if remove_mean:
        centre = z.mean(dim=-1, keepdim=True)
        z = z.sub_(centre) if inplace else z - centre
    shared = z.mean(dim=cond_dim, keepdim=True)
    if precision is None:
        return z.sub_(shared) if inplace else z - shared
    root = precision.to(z.dtype).sqrt()
    if inplace:
        return torch.addcmul(-(shared * root), z, root, out=z)
    return (z - shared) * root


def _rdm_from_kernels(between, within, n_folds, d, inplace):
    """d_ij = (G_ii + G_jj − 2 G_ij) / (F·D) with G = between − within / (F − 1) (= Σ_f K_f)."""
    scale = float(n_folds * d)
    if not inplace:  # autograd tracks z, hence both kernels
        kernel = between - within / (n_folds - 1)
        diag = torch.diagonal(kernel, dim1=-2, dim2=-1)
        rdm = diag.unsqueeze(-1) + diag.unsqueeze(-2) - 2.0 * kernel
        return _zero_diagonal(rdm) / scale
    kernel = between.sub_(within, alpha=1.0 / (n_folds - 1))
    diag = torch.diagonal(kernel, dim1=-2, dim2=-1).clone()
    rdm = kernel.mul_(-2.0).add_(diag.unsqueeze(-1)).add_(diag.unsqueeze(-2))
    return _zero_diagonal(rdm).div_(scale)


def crossnobis_fold_pairs(
    means: torch.Tensor, precisions: torch.Tensor, *, remove_mean: bool = False
) -> torch.Tensor:
    """Crossnobis RDM with one noise precision per fold (rsatoolbox's list-of-noises estimator).

    Every unordered pair of folds (k < l) is compared through ``m_k P_kl m_lᵀ`` with
    ``P_kl = ((P_k⁻¹ + P_l⁻¹) / 2)⁻¹``; the RDM is the mean over pairs.

    Parameters
    ----------
    means : torch.Tensor
        (n_conditions, n_folds, n_channels) per-fold condition means.
    precisions : torch.Tensor
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
        raise DegenerateDataError(
            "data: poisson_cv needs (prior-shrunk) rates > 0; got fold means ≤ "
            f"-prior_lambda*prior_weight = {-shift}"
        )
    return cross_fold_rdm(train_rates, torch.log(test_rates))
