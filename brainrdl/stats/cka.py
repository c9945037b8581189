"""Linear centred kernel alignment (CKA), plain and debiased, batched on torch tensors.

For patterns ``X`` (n stimuli × p features) and ``Y`` (n × q) with column-centred
``X̃``, ``Ỹ``, linear CKA (Kornblith et al. 2019) is

    CKA(X, Y) = ‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F),

i.e. HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with the linear Grams K = X̃X̃ᵀ, L = ỸỸᵀ. The
debiased form replaces each HSIC by its unbiased estimator (Song et al. 2012), as Kornblith's
``feature_space_linear_cka(debiased=True)``:

    HSIC_u(K, L) ∝ tr(K̄L̄) + (1ᵀK̄1)(1ᵀL̄1) / ((n − 1)(n − 2)) − 2 / (n − 2) · 1ᵀK̄L̄1,

where K̄, L̄ are the Grams with zeroed diagonals (formulas: docs/metrics.md). Everything is computed
from whichever is smaller, the feature cross-products (p × q) or the Grams (n × n), so a layer
with 100,000 features and 92 stimuli costs a 92 × 92 product.

Examples
--------
>>> import torch
>>> x = torch.randn(50, 10, dtype=torch.float64)
>>> round(float(cka(x, 2.0 * x + 1.0)), 6)  # invariant to scale and offset
1.0
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cka", "cka_from_grams", "hsic_terms"]


def _as_patterns(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (stimuli × features); got {type(x).__name__}"
        )
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., stimuli, features); got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.to(torch.float64)
    return x


def cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """Linear CKA of patterns ``x`` (..., n, p) and ``y`` (..., n, q), batched over leading dims.

    Parameters
    ----------
    x, y : torch.Tensor
        Patterns with stimuli in rows, in the same order (leading batch dimensions broadcast).
    debiased : bool
        Use the unbiased HSIC estimator (Song et al. 2012), as Kornblith's debiased CKA; needs
        n ≥ 4 stimuli. Less biased upwards with many features and few stimuli, and can be negative.

    Returns
    -------
    torch.Tensor
        CKA with the broadcast batch shape (a 0-d tensor for 2-d inputs), in the promoted
        floating dtype on ``x``'s device. Differentiable.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(40, 8, generator=g, dtype=torch.float64)
    >>> q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    >>> round(float(cka(x, x @ q)), 6)  # invariant to rotations of the features
    1.0
    >>> float(cka(x, torch.randn(40, 8, generator=g, dtype=torch.float64))) < 0.5
    True
    """
    x, y = _as_patterns("x", x), _as_patterns("y", y)
    if x.shape[-2] != y.shape[-2]:
        raise ValueError(
            f"x and y must have the same stimuli (rows); got {x.shape[-2]} and {y.shape[-2]}"
        )
    n = x.shape[-2]
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 stimuli; got {n}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
    p, q = x.shape[-1], y.shape[-1]
    if p * q + p * p + q * q <= 3 * n * n:  # narrow patterns: p × q cross-products
        x = x - x.mean(-2, keepdim=True)
        y = y - y.mean(-2, keepdim=True)
        xt = x.transpose(-1, -2)
        fro2 = lambda m: (m * m).sum((-1, -2))  # noqa: E731
        xy, xx, yy = fro2(xt @ y), fro2(xt @ x), fro2(y.transpose(-1, -2) @ y)
        rx, ry = (x * x).sum(-1), (y * y).sum(-1)  # squared row norms = Gram diagonals
    else:  # wide patterns: n × n Grams
        if dtype == torch.float64:  # centre the Grams (no copies of wide patterns)
            k, lg = _double_centre(_gram(x)), _double_centre(_gram(y))
        else:  # float32: centre the patterns first (the Gram route would lose digits)
            k = _gram(x - x.mean(-2, keepdim=True))
            lg = _gram(y - y.mean(-2, keepdim=True))
        xy, xx, yy = (k * lg).sum((-1, -2)), (k * k).sum((-1, -2)), (lg * lg).sum((-1, -2))
        rx, ry = torch.diagonal(k, dim1=-2, dim2=-1), torch.diagonal(lg, dim1=-2, dim2=-1)
    if debiased:
        xy = _debias(xy, rx, ry, n)
        xx = _debias(xx, rx, rx, n)
        yy = _debias(yy, ry, ry, n)
    return xy / torch.sqrt(xx * yy)


def _gram(x: torch.Tensor) -> torch.Tensor:
    """x xᵀ over the last two dims. On CPU without autograd through NumPy, whose ``a @ a.T``
    is a symmetric rank-k update (half the flops of a general product)."""
    if x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
        return x @ x.transpose(-1, -2)
    a = x.detach().numpy()
    flat = a.reshape(-1, *a.shape[-2:])
    out = np.stack([m @ m.T for m in flat]).reshape(*a.shape[:-1], a.shape[-2])
    return torch.from_numpy(out)


def _debias(
    trace: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, n: int
) -> torch.Tensor:
    """Unbiased HSIC (times (n)(n-3)) from tr(KL) of centred Grams and their diagonals.

    For centred patterns the Grams' row sums vanish, so with zeroed diagonals K̄ = K - diag(rx):
    tr(K̄L̄) = tr(KL) - 2 rx·ry + rx·ry = tr(KL) - rx·ry, 1ᵀK̄1 = -Σrx, K̄1 = -rx.
    """
    rxy = (rx * ry).sum(-1)
    sx, sy = rx.sum(-1), ry.sum(-1)
    return (trace - rxy) + sx * sy / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rxy


def hsic_terms(k: torch.Tensor, lg: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """HSIC of two (..., n, n) Grams up to a common factor (centred inside).

    The building block of :func:`cka_from_grams`; exposed for metrics that reuse Grams.

    Examples
    --------
    >>> import torch
    >>> k = torch.eye(4, dtype=torch.float64)
    >>> round(float(hsic_terms(k, k)), 6)  # tr(HKH HKH) with H the centring matrix: n - 1
    3.0
    """
    n = k.shape[-1]
    if debiased:
        kb = k - torch.diag_embed(torch.diagonal(k, dim1=-2, dim2=-1))
        lb = lg - torch.diag_embed(torch.diagonal(lg, dim1=-2, dim2=-1))
        k1, l1 = kb.sum(-1), lb.sum(-1)
        return (
            (kb * lb).sum((-1, -2))
            + k1.sum(-1) * l1.sum(-1) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (k1 * l1).sum(-1)
        )
    kc = _double_centre(k)
    return (kc * lg).sum((-1, -2))


def _double_centre(k: torch.Tensor) -> torch.Tensor:
    return k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True) + k.mean((-1, -2), keepdim=True)


def cka_from_grams(k: torch.Tensor, lg: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """CKA of two (..., n, n) Gram matrices (any kernel; linear CKA when K = XXᵀ, L = YYᵀ).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(20, 5, dtype=torch.float64)
    >>> k = x @ x.T
    >>> bool(torch.isclose(cka_from_grams(k, k, debiased=True), torch.tensor(1.0, dtype=k.dtype)))
    True
    """
    if debiased:
        # the unbiased estimator needs centred-pattern Grams: centre first (a no-op for HSIC_u of
        # linear Grams of centred data, and what Kornblith's feature-space form computes)
        k, lg = _double_centre(k), _double_centre(lg)
    xy = hsic_terms(k, lg, debiased)
    return xy / torch.sqrt(hsic_terms(k, k, debiased) * hsic_terms(lg, lg, debiased))
