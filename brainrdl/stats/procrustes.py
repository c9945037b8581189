"""Angular Procrustes shape distance between two sets of patterns (Williams et al. 2021).

For stimulus-matched patterns ``X`` (n × p) and ``Y`` (n × q), centred over stimuli, (optionally)
partially whitened and scaled to unit Frobenius norm, the Procrustes *similarity* is the best
alignment of Y to X by an orthogonal transform (the narrower pattern zero-padded),

    s(X, Y) = max over orthogonal Q of tr(X̃ᵀỸQ) / (‖X̃‖_F ‖Ỹ‖_F) = ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F)

(the nuclear norm: sum of singular values), and the angular distance ``arccos(s)`` in radians
(0: same shape up to rotation, reflection, translation and scale; π/2: orthogonal). It is a
metric on shapes (Williams et al. 2021, "Generalized shape metrics on neural representations").

Partial whitening with ``alpha`` (netrep's ``LinearMetric``): each pattern is multiplied by
``V diag(d) Vᵀ`` with ``XᵀX = V diag(λ) Vᵀ`` and ``d = alpha + (1 - alpha) λ^(-1/2)``,
rescaled to keep the total variance; ``alpha=1`` is plain Procrustes, ``alpha=0`` full whitening
(a CCA-like metric: mean canonical correlation).

Everything is batched over leading dimensions and runs on the inputs' device. The nuclear norm is
computed from the n × n Gram matrices when features outnumber stimuli (an n-dimensional factor of
each pattern carries all of its shape), so wide layers cost no more than narrow ones.

Examples
--------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(30, 5, generator=g, dtype=torch.float64)
>>> q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
>>> round(float(procrustes_distance(x, 3.0 * x @ q + 1.0)), 6)  # rotation, scale, shift
0.0
"""

from __future__ import annotations

import torch

__all__ = ["partial_whiten", "procrustes_distance", "procrustes_similarity", "shape_factor"]


def _check(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (stimuli × features); got "
                            f"{type(v).__name__}")  # fmt: skip
        if v.ndim < 2:
            raise ValueError(
                f"{name} must have shape (..., stimuli, features); got {tuple(v.shape)}"
            )
    if x.shape[-2] != y.shape[-2]:
        raise ValueError(
            "Procrustes needs stimulus-matched patterns: x and y must have the same stimuli "
            f"(rows) in the same order; got {x.shape[-2]} and {y.shape[-2]} rows"
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    return x.to(dtype), y.to(device=x.device, dtype=dtype)


def partial_whiten(x: torch.Tensor, alpha: float = 1.0, eig_tol: float = 1e-7) -> torch.Tensor:
    """Partially whiten centred patterns (..., n, p): ``alpha=1`` none, ``alpha=0`` full.

    As netrep's ``whiten(X, alpha, preserve_variance=True)``: ``X V diag(d) Vᵀ`` with
    ``d = alpha + (1 - alpha) λ^(-1/2)`` from the eigendecomposition ``XᵀX = V diag(λ) Vᵀ``
    (eigenvalues floored at ``eig_tol``), rescaled so that the total variance is kept.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(50, 3, dtype=torch.float64)
    >>> x = x - x.mean(0)
    >>> w = partial_whiten(x, alpha=0.0)
    >>> c = w.T @ w
    >>> bool(torch.allclose(c / c[0, 0], torch.eye(3, dtype=x.dtype), atol=1e-8))
    True
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (1: no whitening); got {alpha!r}")
    if alpha > 1.0 - eig_tol:
        return x
    lam, v = torch.linalg.eigh(x.transpose(-1, -2) @ x)
    lam = lam.clamp(min=eig_tol)
    d = alpha + (1.0 - alpha) * lam.rsqrt()
    d = d * torch.sqrt(lam.sum(-1, keepdim=True) / (d * d * lam).sum(-1, keepdim=True))
    return x @ (v * d.unsqueeze(-2)) @ v.transpose(-1, -2)


def shape_factor(x: torch.Tensor) -> torch.Tensor:
    """An (..., n, min(n, p)) factor F of centred patterns with F Fᵀ = X Xᵀ.

    Rotation-invariant metrics (CKA, Procrustes) of X equal those of F, and so do those of any
    subset or resample of the rows, so wide layers are reduced once to at most n columns.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(6, 40, dtype=torch.float64)
    >>> f = shape_factor(x)
    >>> f.shape[-1], bool(torch.allclose(f @ f.T, x @ x.T))
    (6, True)
    """
    n, p = x.shape[-2], x.shape[-1]
    if p <= n:
        return x
    lam, u = torch.linalg.eigh(x @ x.transpose(-1, -2))
    return u * lam.clamp(min=0.0).sqrt().unsqueeze(-2)


def _nuclear(m: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(m).sum(-1)


def procrustes_similarity(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, centre: bool = True
) -> torch.Tensor:
    """Cosine of the angular Procrustes distance: ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F), in [0, 1].

    Parameters
    ----------
    x, y : torch.Tensor
        Stimulus-matched patterns (..., n, p) and (..., n, q).
    alpha : float
        Partial whitening (see :func:`partial_whiten`): 1 none (plain Procrustes), 0 full.
    centre : bool
        Centre each feature over the stimuli first (translation invariance).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(10, 4, dtype=torch.float64)
    >>> round(float(procrustes_similarity(x, -x)), 6)  # a reflection aligns them
    1.0
    """
    x, y = _check(x, y)
    if centre:
        x = x - x.mean(-2, keepdim=True)
        y = y - y.mean(-2, keepdim=True)
    x, y = partial_whiten(x, alpha), partial_whiten(y, alpha)
    x, y = shape_factor(x), shape_factor(y)
    num = _nuclear(x.transpose(-1, -2) @ y)
    den = torch.linalg.matrix_norm(x) * torch.linalg.matrix_norm(y)
    return (num / den).clamp(max=1.0)


def procrustes_distance(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, centre: bool = True
) -> torch.Tensor:
    """Angular Procrustes distance ``arccos(procrustes_similarity(x, y))`` in radians, [0, π/2].

    A metric on the shapes of stimulus-matched patterns (Williams et al. 2021): symmetric, zero
    only for the same shape (up to rotation, reflection, translation and scale), and it obeys the
    triangle inequality. Parameters as :func:`procrustes_similarity`.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    >>> y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
    >>> import math
    >>> 0.0 < float(procrustes_distance(x, y)) < math.pi / 2
    True
    """
    return torch.arccos(procrustes_similarity(x, y, alpha=alpha, centre=centre))

