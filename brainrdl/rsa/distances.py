"""Tensor core of the RDM engine: pairwise dissimilarities from Gram products.

Each function maps patterns of shape ``(..., n_conditions, n_channels)`` to a square RDM of shape
``(..., n_conditions, n_conditions)``. Every measure is computed from one Gram matrix (one GEMM);
no ``(n, n, n_channels)`` difference tensor is ever formed. Under autograd, the euclidean,
correlation and cosine Grams use a symmetric-Gram backward (one GEMM, centring folded in; see
``_SymmetricGram``) instead of autograd's two. Scalings follow rsatoolbox: the
euclidean, mahalanobis and poisson dissimilarities are divided by the number of channels.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from brainrdl.errors import DegenerateDataError, InvalidArgumentError
from brainrdl.rsa.methods import RDM_TENSOR_METHODS
from brainrdl.validation import check_choice, check_patterns

TENSOR_METHODS = RDM_TENSOR_METHODS  # alias kept for existing imports

# A pattern counts as constant (correlation) when its spread across channels is below this many
# float epsilons of its magnitude: below that, the centred pattern is rounding noise and its
# "correlation" would be an arbitrary number (e.g. 1.0 for 0.1 repeated in float32).
_CONSTANT_EPS = 100.0


def _tracks_grad(t: torch.Tensor) -> bool:
    """Whether autograd records ops on ``t``; if not, the RDM is finished in place (no copies)."""
    return torch.is_grad_enabled() and t.requires_grad


def _sq_dist_from_gram(gram: torch.Tensor, scale: float) -> torch.Tensor:
    """(g_ii + g_jj − 2 g_ij) / scale, clamped at 0, exact zero diagonal; consumes ``gram``."""
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)
    if _tracks_grad(gram):
        dist = diag.unsqueeze(-1) + diag.unsqueeze(-2) - 2.0 * gram
        # Cancellation can leave tiny negatives; the diagonal is exactly zero by definition.
        return _zero_diagonal(dist.clamp_min(0.0)) / scale
    diag = diag.clone()
    dist = gram.mul_(-2.0).add_(diag.unsqueeze(-1)).add_(diag.unsqueeze(-2)).clamp_min_(0.0)
    return _zero_diagonal(dist).div_(scale)


def _gram(x: torch.Tensor) -> torch.Tensor:
    """x @ xᵀ over the last two dimensions.

    On CPU without autograd, a 2-D float Gram goes to NumPy's BLAS, which recognises ``a @ a.T``
    and calls the symmetric rank-k update (syrk): half the multiply-adds of the general product
    torch uses, same float arithmetic, zero-copy in and out.
    """
    if (x.ndim == 2 and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not _tracks_grad(x)):
        a = x.detach().contiguous().numpy()
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by the caller
            return torch.from_numpy(a @ a.T)
    return x @ x.transpose(-1, -2)


def _centre(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``x`` minus its mean along ``dim`` (-2: over conditions, per channel; -1: over channels)."""
    return x if dim is None else x - x.mean(dim=dim, keepdim=True)


class _SymmetricGram(torch.autograd.Function):
    """Differentiable Gram ``Xc Xcᵀ`` of ``Xc = centre(X)``: one GEMM forward, one backward.

    Autograd's ``x @ x.T`` runs two GEMMs in backward (one per operand) and then back-propagates
    through the centring pass. Here the Gram is symmetric, so with ``S = dG + dGᵀ``:

    - no centring: ``dX = S X``;
    - centring over conditions (``Xc = H X``, H the B×B centring matrix): ``dX = H S H X``; the
      double centring is done on the B×B matrix, so the gradient costs one (B,B)@(B,D) product;
    - centring over channels (``Xc = X Hᴰ``): ``dX = S X Hᴰ``, i.e. ``S X`` with each row centred.

    The centred ``Xc`` is a forward-only temporary (the Gram of the explicitly centred patterns
    keeps large common offsets from cancelling); only ``X`` itself is saved, which the producing
    layer's graph usually holds already. Peak extra memory: one (…, B, D) temporary and the
    (…, B, B) Gram; no (B, B, D) tensor. The backward is written in differentiable ops, so
    double backward works.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int | None) -> torch.Tensor:  # type: ignore[override]
        ctx.dim = dim
        ctx.save_for_backward(x)
        return _gram(_centre(x, dim))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = grad + grad.transpose(-1, -2)
        if ctx.dim == -2:
            # H S H for symmetric S: subtract row and column means, add back the grand mean
            row = s.mean(dim=-1, keepdim=True)
            s = s - row - row.transpose(-1, -2) + row.mean(dim=-2, keepdim=True)
        dx = s @ x
        if ctx.dim == -1:
            dx = dx - dx.mean(dim=-1, keepdim=True)
        return dx, None


def _centred_gram(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Gram of ``x`` centred along ``dim``: the custom-backward route when autograd tracks x."""
    if _tracks_grad(x):
        return _SymmetricGram.apply(x, dim)
    return _gram(_centre(x, dim))


def _zero_diagonal(rdm: torch.Tensor) -> torch.Tensor:
    """``rdm`` with an exact zero diagonal (in place when autograd does not track it)."""
    if not _tracks_grad(rdm):
        torch.diagonal(rdm, dim1=-2, dim2=-1).zero_()
        return rdm
    n = rdm.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=rdm.device)
    return rdm.masked_fill(eye, 0.0)


def euclidean_rdm(x: torch.Tensor) -> torch.Tensor:
    """Squared euclidean distance per channel, rsatoolbox's ``euclidean``: ||x_i - x_j||² / D.

    Examples
    --------
    >>> import torch
    >>> euclidean_rdm(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))[0, 1].item()
    1.0
    """
    # Centring each channel leaves distances unchanged and avoids cancellation for large means.
    return _sq_dist_from_gram(_centred_gram(x, -2), x.shape[-1])


def correlation_rdm(x: torch.Tensor) -> torch.Tensor:
    """Correlation distance 1 − Pearson r between condition patterns (across channels).

    Raises a DegenerateDataError when a pattern is constant across channels, up to rounding
    relative to its magnitude (its correlation is undefined). Scale-free: each pattern is divided
    by its largest magnitude first, so float32 values from 1e-30 to 1e30 neither underflow nor
    overflow (the result does not depend on that scale, nor does its gradient).

    Examples
    --------
    >>> import torch
    >>> round(correlation_rdm(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))[0, 1].item(), 6)
    2.0
    """
    gram = _centred_gram(_row_scaled(x, "correlation"), -1)
    _check_not_constant(gram, x.shape[-1])
    return _cosine_from_gram(gram)


def cosine_rdm(x: torch.Tensor) -> torch.Tensor:
    """Cosine distance 1 − cos(x_i, x_j); all-zero patterns raise a DegenerateDataError.

    Scale-free as :func:`correlation_rdm` (each pattern divided by its largest magnitude first).

    Examples
    --------
    >>> import torch
    >>> cosine_rdm(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))[0, 1].item()
    1.0
    """
    return _cosine_from_gram(_centred_gram(_row_scaled(x, "cosine"), None))


def _row_scaled(x: torch.Tensor, what: str) -> torch.Tensor:
    """Each pattern divided by its largest magnitude (detached), all-zero patterns refused.

    Correlation and cosine are invariant to a positive scale per pattern (homogeneous of degree
    0), so dividing by a constant computed from x without tracking it changes neither the value
    nor the gradient; it keeps the Gram's squares within range in float32 (1e20² overflows,
    1e-25² underflows).
    """
    scale = x.detach().abs().amax(dim=-1, keepdim=True)
    zero = scale == 0
    if bool(zero.any()):
        rows = torch.nonzero(zero.reshape(-1, x.shape[-2]).any(dim=0)).flatten().tolist()
        kind = "constant across channels" if what == "correlation" else "all zero"
        raise DegenerateDataError(
            f"data: {what} distance is undefined for patterns that are {kind}: conditions "
            f"{rows[:10]} ({len(rows)} in all; all zero); drop them or use method='euclidean'"
        )
    return x / scale


def _check_not_constant(gram: torch.Tensor, n_channels: int) -> None:
    """Refuse patterns whose centred Gram diagonal (squared norm) is rounding noise.

    Patterns arrive scaled to max |x| = 1, so ‖x‖² ∈ [1, D] before centring: a centred squared
    norm below (_CONSTANT_EPS·eps)²·D is rounding noise of a constant pattern. (Cosine needs no
    such check: an all-zero pattern is refused by the scaling, any other has ‖x‖² ≥ 1.)
    """
    sq_norms = torch.diagonal(gram, dim1=-2, dim2=-1).detach()
    limit = (_CONSTANT_EPS * torch.finfo(gram.dtype).eps) ** 2 * n_channels
    flat = sq_norms <= limit
    if bool(flat.any()):
        rows = torch.nonzero(flat.reshape(-1, flat.shape[-1]).any(dim=0)).flatten().tolist()
        raise DegenerateDataError(
            "data: correlation distance is undefined for patterns that are constant across "
            "channels (up to rounding, relative to their magnitude): conditions "
            f"{rows[:10]} ({len(rows)} in all); drop them or use method='euclidean'"
        )


def _cosine_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """1 − g_ij / (‖x_i‖ ‖x_j‖) from the Gram of the (centred) patterns; consumes ``gram``.

    The norms are the square roots of the Gram's diagonal, so normalising costs B² operations
    instead of a pass (and its backward) over the (B, D) patterns.
    """
    norms = torch.sqrt(torch.diagonal(gram, dim1=-2, dim2=-1))
    if _tracks_grad(gram):
        rdm = 1.0 - gram / norms.unsqueeze(-1) / norms.unsqueeze(-2)
        return _zero_diagonal(rdm)
    rdm = gram.div_(norms.unsqueeze(-1)).div_(norms.unsqueeze(-2)).neg_().add_(1.0)
    return _zero_diagonal(rdm)


def mahalanobis_rdm(x: torch.Tensor, precision: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Mahalanobis distance per channel, (x_i − x_j)ᵀ P (x_i − x_j) / D.

    ``precision`` is a (D, D) noise precision (e.g. from ``rsatoolbox.data.prec_from_residuals``)
    or a (D,) diagonal; None gives the euclidean RDM.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> torch.allclose(mahalanobis_rdm(x, torch.eye(3, dtype=x.dtype)), euclidean_rdm(x))
    True
    """
    if precision is None:
        return euclidean_rdm(x)
    xc = x - x.mean(dim=-2, keepdim=True)
    d = x.shape[-1]
    precision = precision.to(dtype=x.dtype, device=x.device)
    if tuple(precision.shape) == (d,):
        weighted = xc * precision
    elif precision.ndim >= 2 and tuple(precision.shape[-2:]) == (d, d):
        weighted = xc @ precision
    else:
        raise InvalidArgumentError(
            f"noise must have shape (D, D) = ({d}, {d}) or its diagonal ({d},); "
            f"got {tuple(precision.shape)}"
        )
    return _sq_dist_from_gram(weighted @ xc.transpose(-1, -2), d)


def poisson_rdm(
    x: torch.Tensor, prior_lambda: float = 1.0, prior_weight: float = 0.1
) -> torch.Tensor:
    """Symmetrised KL divergence between Poisson rates (rsatoolbox's ``poisson``), per channel.

    Rates are first shrunk toward ``prior_lambda``: r = (x + prior_lambda·prior_weight) /
    (1 + prior_weight); then d_ij = Σ_c (r_ic − r_jc)(log r_ic − log r_jc) / D, which equals
    Σ r_i log r_i + r_j log r_j − r_i log r_j − r_j log r_i: two Gram products.

    Examples
    --------
    >>> import torch
    >>> poisson_rdm(torch.tensor([[1.0, 2.0], [1.0, 2.0]]))[0, 1].item()
    0.0
    """
    rates = (x + prior_lambda * prior_weight) / (1.0 + prior_weight)
    if bool((rates <= 0).any()):
        raise DegenerateDataError(
            "data: poisson distance needs rates > 0 after shrinkage, i.e. values > "
            f"-prior_lambda*prior_weight = {-prior_lambda * prior_weight}"
        )
    logs = torch.log(rates)
    cross = rates @ logs.transpose(-1, -2)  # cross[i, j] = Σ r_i log r_j
    self_term = torch.diagonal(cross, dim1=-2, dim2=-1)
    if _tracks_grad(cross):
        rdm = self_term.unsqueeze(-1) + self_term.unsqueeze(-2) - cross - cross.transpose(-1, -2)
        return _zero_diagonal(rdm.clamp_min(0.0)) / x.shape[-1]
    rdm = cross.transpose(-1, -2).add(cross).neg_()
    rdm.add_(self_term.unsqueeze(-1)).add_(self_term.unsqueeze(-2)).clamp_min_(0.0)
    return _zero_diagonal(rdm).div_(x.shape[-1])


def pairwise_rdm(
    x: torch.Tensor,
    method: str = "euclidean",
    *,
    noise: torch.Tensor | None = None,
    vector: bool = False,
    prior_lambda: float = 1.0,
    prior_weight: float = 0.1,
) -> torch.Tensor:
    """Differentiable RDM of patterns ``x`` (..., n_conditions, n_channels) on x's device and dtype.

    Parameters
    ----------
    x : torch.Tensor
        Patterns: rows are conditions (stimuli), columns channels (voxels, units, features).
    method : str
        One of ``"euclidean"``, ``"correlation"``, ``"cosine"``, ``"mahalanobis"``, ``"poisson"``.
    noise : torch.Tensor | None
        Noise precision for ``"mahalanobis"``: (D, D) or its (D,) diagonal.
    vector : bool
        Return the upper triangle (k=1, row-major, as ``scipy.spatial.distance.squareform``)
        of shape (..., n·(n−1)/2) instead of the square matrix.

    Examples
    --------
    >>> import torch
    >>> pairwise_rdm(torch.randn(2, 6, 10), "correlation", vector=True).shape
    torch.Size([2, 15])
    """
    check_choice("method", method, TENSOR_METHODS)
    check_patterns("data", x)
    if noise is not None:
        if method != "mahalanobis":
            raise InvalidArgumentError(
                f"noise is used by method='mahalanobis' only, not {method!r}")
        check_precision("noise", noise, x.shape[-1])
    return _pairwise(x, method, noise, vector, prior_lambda, prior_weight)


def _pairwise(x: torch.Tensor, method: str, noise: torch.Tensor | None, vector: bool,
              prior_lambda: float, prior_weight: float) -> torch.Tensor:
    """:func:`pairwise_rdm` without the boundary checks, for callers that made them already."""
    if method == "euclidean":
        rdm = euclidean_rdm(x)
    elif method == "correlation":
        rdm = correlation_rdm(x)
    elif method == "cosine":
        rdm = cosine_rdm(x)
    elif method == "mahalanobis":
        rdm = mahalanobis_rdm(x, noise)
    else:
        rdm = poisson_rdm(x, prior_lambda, prior_weight)
    if method in ("euclidean", "mahalanobis", "poisson"):
        check_no_overflow(rdm, x)
    return upper_tri(rdm) if vector else rdm


def check_no_overflow(rdm: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Raise a DegenerateDataError when an RDM of finite patterns came out non-finite (overflow).

    Squared distances of float32 values around 1e20 exceed float32's range (3.4e38); the RDM
    cannot hold them, so say so instead of returning inf / NaN.

    Examples
    --------
    >>> import torch
    >>> check_no_overflow(torch.zeros(2, 2), torch.ones(2, 3)).shape
    torch.Size([2, 2])
    """
    if bool(torch.isfinite(rdm.detach().amax())):
        return rdm
    biggest = float(x.detach().abs().amax())
    raise DegenerateDataError(
        f"data: the squared distances overflow {x.dtype} (largest |value| {biggest:.3g}, "
        f"largest representable {torch.finfo(x.dtype).max:.3g}); rescale the data or cast it "
        "to float64"
    )


def check_precision(name: str, precision: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Check a noise precision: (D, D) positive definite, or a positive (D,) diagonal.

    A precision that is not positive definite gives negative or zero "distances" (rsatoolbox
    would return an all-zero RDM for some), so it is refused with a DegenerateDataError.

    Examples
    --------
    >>> import torch
    >>> check_precision("noise", torch.eye(3), 3).shape
    torch.Size([3, 3])
    >>> check_precision("noise", -torch.eye(3), 3)
    Traceback (most recent call last):
    ...
    brainrdl.errors.DegenerateDataError: noise is not positive definite ...
    """
    p = precision.detach()
    d = n_channels
    if tuple(p.shape) not in ((d, d), (d,)):
        raise InvalidArgumentError(
            f"{name} must have shape (D, D) = ({d}, {d}) for D = {d} channels (or its ({d},) "
            f"diagonal); got shape {tuple(p.shape)}"
        )
    if not bool(torch.isfinite(p).all()):
        raise DegenerateDataError(f"{name} contains NaN or infinite values")
    if p.ndim == 1:
        if not bool((p > 0).all()):
            bad = torch.nonzero(p <= 0).flatten().tolist()
            raise DegenerateDataError(
                f"{name} is not positive definite: diagonal entries at channels {bad[:10]} are "
                "≤ 0; a precision needs positive entries (use a shrinkage estimate, e.g. "
                "rsatoolbox.data.prec_from_residuals(..., method='shrinkage_diag'))"
            )
        return precision
    # only the symmetric part enters a quadratic form (xᵀPx), so that is what must be PD
    p64 = p.to(torch.float64)
    p64 = (p64 + p64.T) / 2
    scale = float(p64.abs().amax()) or 1.0
    if int(torch.linalg.cholesky_ex(p64 / scale).info) != 0:
        raise DegenerateDataError(
            f"{name} is not positive definite (its Cholesky factorisation fails; smallest "
            f"eigenvalue {float(torch.linalg.eigvalsh(p64).min()):.3g}); use a shrinkage "
            "estimate, e.g. rsatoolbox.data.prec_from_residuals(..., method='shrinkage_eye')"
        )
    return precision


def upper_tri(square: torch.Tensor) -> torch.Tensor:
    """Upper triangle (diagonal excluded) of (..., n, n) as (..., n·(n−1)/2), row-major.

    Examples
    --------
    >>> import torch
    >>> upper_tri(torch.arange(9.0).reshape(3, 3)).tolist()
    [1.0, 2.0, 5.0]
    """
    if square.ndim < 2 or square.shape[-1] != square.shape[-2]:
        raise InvalidArgumentError(
            f"upper_tri needs square matrices (..., n, n); got shape {tuple(square.shape)}")
    n = square.shape[-1]
    if n > _INDEX_LIMIT:
        # large n: copying row slices beats gathering through 2·n²/2 int64 indices (or a
        # masked_select), in time and memory; row-major, as scipy's squareform
        return torch.cat([square[..., i, i + 1 :] for i in range(n - 1)], dim=-1)
    rows, cols = _triu_indices(n, square.device)
    return square[..., rows, cols]


_INDEX_LIMIT = 2048


@functools.lru_cache(maxsize=16)
def _triu_indices(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(n, n, offset=1, device=device)
    return rows, cols


def n_conditions_from_length(k: int) -> int | None:
    """The number of conditions n of an RDM whose upper triangle has k = n(n−1)/2 entries, or None
    when no n gives k (the inverse triangular number, written once for every caller).

    Examples
    --------
    >>> n_conditions_from_length(10), n_conditions_from_length(11)
    (5, None)
    """
    n = round((1 + math.sqrt(1 + 8 * k)) / 2)
    return n if n * (n - 1) == 2 * k else None


def square_from_upper_tri(vector: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`upper_tri`: symmetric (..., n, n) with a zero diagonal.

    Examples
    --------
    >>> import torch
    >>> square_from_upper_tri(torch.tensor([1.0, 2.0, 5.0]))[2, 1].item()
    5.0
    """
    k = vector.shape[-1]
    n = n_conditions_from_length(k)
    if n is None:
        raise InvalidArgumentError(f"vector length {k} is not n(n-1)/2 for any n")
    rows, cols = torch.triu_indices(n, n, offset=1, device=vector.device)
    square = vector.new_zeros((*vector.shape[:-1], n, n))
    square[..., rows, cols] = vector
    square[..., cols, rows] = vector
    return square
