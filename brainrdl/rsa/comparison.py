"""RDM comparisons: ``compare`` (rsatoolbox's numbers) and its batched tensor core.

Methods follow ``rsatoolbox.rdm.compare`` exactly:

- ``"cosine"``: cosine of the dissimilarity vectors; ``"corr"``: Pearson correlation.
- ``"spearman"``: Pearson correlation of average ranks; ``"rho-a"``: 12·Σ r̃₁r̃₂ / (k³ − k) with
  centred ranks r̃ (no tie correction); ``"tau-a"``: Kendall's tau-a.
- ``"cosine_cov"`` / ``"corr_cov"``: cosine / correlation after whitening with the covariance of
  the dissimilarity estimates. With ``sigma_k`` None or a (n_cond,) vector of pattern variances
  this is the cosine of double-centred second-moment matrices (rsatoolbox's ``_cov_weighting``);
  with a (n_cond, n_cond) ``sigma_k`` it is v₁ᵀV⁻¹v₂ / (‖v₁‖_V ‖v₂‖_V) with V = ξ∘ξ,
  ξ = CΣCᵀ (C the pairwise contrasts), solved exactly (rsatoolbox stops its conjugate gradient at
  a relative residual of 1e-5, so its values differ from the exact ones by about that much).

NaN dissimilarities follow rsatoolbox's ``_parse_input_rdms``: a position that is NaN in any RDM
of ``rdm1`` is dropped from every comparison; ``rdm2`` must have NaN at exactly the same
positions, else a ValueError. Zero-length vectors (after centring, for ``corr``) give 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from brainrdl.errors import DegenerateDataError, InvalidArgumentError, InvalidTypeError
from brainrdl.rsa.distances import n_conditions_from_length, square_from_upper_tri
from brainrdl.rsa.methods import (
    COMPARISON_METHODS,
    COV_COMPARISON_METHODS,
    DIFFERENTIABLE_COMPARISON_METHODS,
)
from brainrdl.rsa.ranks import centred_ranks_many, rank_transform, tau_a
from brainrdl.validation import check_choice

__all__ = ["DIFFERENTIABLE_METHODS", "METHODS", "compare", "compare_vectors", "rank_transform"]

# aliases of the one list in brainrdl.rsa.methods, kept for existing imports
METHODS = COMPARISON_METHODS
DIFFERENTIABLE_METHODS = DIFFERENTIABLE_COMPARISON_METHODS
_COV_METHODS = COV_COMPARISON_METHODS
# A 2-d tensor reads as one square RDM when its diagonal is within this fraction of its largest
# entry of zero and it is symmetric to this relative tolerance (1 - corrcoef leaves ~1e-7).
_SQUARE_RTOL = 1e-5
# A dense V (k×k) for a full sigma_k beyond this many dissimilarities would not fit in memory.
_MAX_K_FULL_SIGMA = 20_000


def compare(
    rdm1: Any,
    rdm2: Any,
    method: str = "cosine",
    sigma_k: Any = None,
    *,
    square: bool | None = None,
) -> Any:
    """Similarity of every RDM in ``rdm1`` with every RDM in ``rdm2``.

    Parameters
    ----------
    rdm1, rdm2 : Any
        Either rsatoolbox ``RDMs`` (or NumPy arrays of shape (k,) / (n, k), as rsatoolbox
        accepts), giving a NumPy array; or torch tensors, giving a tensor on their device:
        a vector (k,), a stack of vectors (n, k), a square RDM (n_cond, n_cond) or a stack of
        squares (n, n_cond, n_cond) (their upper triangle is used). Mixing ``RDMs`` with a
        tensor gives a tensor.
    method : str
        One of ``"cosine"``, ``"corr"``, ``"spearman"``, ``"rho-a"``, ``"tau-a"``,
        ``"corr_cov"``, ``"cosine_cov"``.
    sigma_k : Any
        Covariance of the pattern estimates for the ``*_cov`` methods: None (identity),
        (n_cond,) variances or a (n_cond, n_cond) matrix. Ignored by the other methods, as in
        rsatoolbox.
    square : bool | None
        For a 2-d tensor: True reads it as one square RDM, False as a stack of vectors, None
        decides: square when it is square and its diagonal is zero (or NaN) up to a relative
        tolerance of 1e-5 of its largest entry (``1 - corrcoef`` leaves ~1e-7 there). A square
        RDM that is not symmetric (same tolerance) raises a DegenerateDataError: pass
        ``square=False`` to read its rows as vectors.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Shape (n_rdms1, n_rdms2), float64 for rsatoolbox input; the inputs' dtype for tensors.
        Differentiable for ``cosine``, ``corr``, ``corr_cov`` and ``cosine_cov``.

    Examples
    --------
    >>> import torch
    >>> models = torch.rand(3, 10, dtype=torch.float64)   # 3 RDM vectors of 5 conditions
    >>> data = torch.rand(2, 5, 5, dtype=torch.float64)   # 2 square RDMs
    >>> compare(models, data, method="spearman").shape
    torch.Size([3, 2])
    >>> round(compare(models[0], models[0], method="corr").item(), 6)
    1.0
    """
    check_choice("method", method, METHODS)
    if square is not None and not isinstance(square, bool):
        raise InvalidTypeError(f"square must be True, False or None; got {square!r}")
    tensor_out = isinstance(rdm1, torch.Tensor) or isinstance(rdm2, torch.Tensor)
    if not tensor_out:
        v1, n1 = _rsa_vectors("rdm1", rdm1)
        v2, n2 = _rsa_vectors("rdm2", rdm2)
        t1, t2 = torch.from_numpy(v1), torch.from_numpy(v2)
    else:
        ref = rdm1 if isinstance(rdm1, torch.Tensor) else rdm2
        t1, n1 = _tensor_vectors("rdm1", rdm1, square, ref)
        t2, n2 = _tensor_vectors("rdm2", rdm2, square, ref)
        dtype = _result_dtype(t1, t2)
        t1, t2 = t1.to(dtype), t2.to(dtype)
    finite = _check_no_inf("rdm1", t1) & _check_no_inf("rdm2", t2)
    if t1.shape[-1] != t2.shape[-1]:
        raise InvalidArgumentError(
            f"rdm1 and rdm2 must have the same number of conditions; got rdm1 with "
            f"{_describe(n1, t1.shape[-1])} and rdm2 with {_describe(n2, t2.shape[-1])}"
        )
    sigma = None if sigma_k is None or method not in _COV_METHODS else _as_tensor(sigma_k, t1)
    out = _compare_vectors(t1, t2, method, sigma, None, None, finite=finite)
    return out if tensor_out else out.numpy()


def compare_vectors(
    a: torch.Tensor,
    b: torch.Tensor,
    method: str = "cosine",
    sigma_k: torch.Tensor | None = None,
    n_conditions: int | None = None,
    *,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched core of :func:`compare`: every row of ``a`` against every row of ``b``.

    Parameters
    ----------
    a : torch.Tensor
        RDM vectors of shape (..., n1, k): upper triangles in row-major order (as
        ``rsatoolbox.rdm.RDMs.get_vectors`` and :func:`brainrdl.upper_tri`).
    b : torch.Tensor
        RDM vectors of shape (..., n2, k); the leading batch dimensions of ``a`` and ``b``
        broadcast (e.g. ``a`` (B, n1, k) of B bootstrap samples against ``b`` (1, n2, k)).
    method : str
        One of ``"cosine"``, ``"corr"``, ``"spearman"``, ``"rho-a"``, ``"tau-a"``,
        ``"corr_cov"``, ``"cosine_cov"``.
    sigma_k : torch.Tensor | None
        Pattern covariance for the ``*_cov`` methods: None, (n_conditions,) or
        (n_conditions, n_conditions); see :func:`compare`.
    n_conditions : int | None
        Number of conditions. Optional: inferred from ``k`` (or from ``valid``); when given it
        is checked. Only the ``*_cov`` methods use the RDM structure; the others treat the
        vectors as plain samples of length k.
    valid : torch.Tensor | None
        Boolean mask of length n_conditions·(n_conditions − 1)/2 telling which dissimilarities
        the k columns of ``a`` and ``b`` are, for callers that have already dropped NaN
        positions (k = valid.sum()). When None and the inputs hold NaN, the mask is built as
        rsatoolbox does: a position NaN anywhere in ``a`` (over all batch entries) is dropped,
        and ``b`` must be NaN at the same positions.

    Returns
    -------
    torch.Tensor
        Similarities of shape (..., n1, n2) on the inputs' device, in their (promoted) dtype;
        differentiable for ``cosine``, ``corr``, ``corr_cov`` and ``cosine_cov``.

    Notes
    -----
    For bootstrap loops, pass all resamples at once as a batch dimension: one call costs one
    batched GEMM (plus one batched sort for the rank methods). ``tau-a`` is O(k²) per pair on
    GPUs and for k ≤ 300 (a sign-product GEMM) and O(k log k) per pair on CPU otherwise.

    Examples
    --------
    >>> import torch
    >>> boot = torch.rand(100, 4, 45, dtype=torch.float64)  # 100 resamples × 4 model RDMs
    >>> data = torch.rand(1, 3, 45, dtype=torch.float64)    # 3 data RDMs, shared
    >>> compare_vectors(boot, data, "corr").shape
    torch.Size([100, 4, 3])
    """
    check_choice("method", method, METHODS)
    return _compare_vectors(a, b, method, sigma_k, n_conditions, valid)


def _compare_vectors(
    a, b, method, sigma_k, n_conditions, valid, *, finite: bool = False
) -> torch.Tensor:
    """:func:`compare_vectors` after the method check (``compare`` checked it already).

    ``finite=True``: the caller has seen that a and b hold no NaN or inf (no second look)."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor):
            raise InvalidTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise InvalidArgumentError(
                f"{name} must have shape (..., n_rdms, k); got a {x.ndim}-d tensor of shape "
                f"{tuple(x.shape)} (use x[None] for a single RDM vector)"
            )
    if a.shape[-1] != b.shape[-1]:
        raise InvalidArgumentError(
            f"a and b must have the same number of dissimilarities k (last dimension); got "
            f"{a.shape[-1]} and {b.shape[-1]}"
        )
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise InvalidArgumentError(
            f"the batch dimensions of a {tuple(a.shape[:-2])} and b {tuple(b.shape[:-2])} "
            "do not broadcast"
        ) from None
    if method not in DIFFERENTIABLE_METHODS and torch.is_grad_enabled() and (
        a.requires_grad or b.requires_grad
    ):
        # Ranks are piecewise constant: the result cannot carry a gradient. Say so rather than
        # hand back a detached tensor that silently trains nothing.
        warnings.warn(
            f"method={method!r} is rank-based and not differentiable: the result carries no "
            f"gradient; use one of {list(DIFFERENTIABLE_METHODS)} inside a loss",
            UserWarning,
            stacklevel=3,
        )
    dtype = _result_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    if valid is None:
        if not finite:
            a, b, valid = _drop_nan(a, b)
    else:
        valid = torch.as_tensor(valid, dtype=torch.bool, device=a.device)
        if valid.ndim != 1 or int(valid.sum()) != a.shape[-1]:
            raise InvalidArgumentError(
                f"valid must be a 1-d boolean mask with k={a.shape[-1]} True entries; got shape "
                f"{tuple(valid.shape)} with {int(valid.sum())} True"
            )
    k = a.shape[-1]
    if k < 2:
        raise InvalidArgumentError(
            f"comparisons need at least 2 non-NaN dissimilarities; got {k}")
    if method in _COV_METHODS or n_conditions is not None:
        n_conditions = _check_n_conditions(n_conditions, k if valid is None else valid.numel())

    if method == "cosine":
        return _cosine(a, b)
    if method == "corr":
        return _cosine(_centre(a), _centre(b))
    if method in ("spearman", "rho-a"):
        (ra, na), (rb, nb) = centred_ranks_many([a, b], with_norms=True)
        if method == "spearman":
            return _cosine_of_ranks(ra, rb, na, nb)
        return ra @ rb.transpose(-1, -2) * (12.0 / (k**3 - k))
    if method == "tau-a":
        return tau_a(a, b)
    if method == "corr_cov":
        a, b = _centre(a), _centre(b)
    sigma = _check_sigma(sigma_k, n_conditions, a)
    if sigma is not None and sigma.ndim == 2:
        return _cosine_full_sigma(a, b, sigma, valid, n_conditions)
    if sigma is None and valid is None:
        return _cosine_cov_identity(a, b, n_conditions, centred=method == "corr_cov")
    return _cosine(_whiten(a, valid, n_conditions, sigma), _whiten(b, valid, n_conditions, sigma))


# --------------------------------------------------------------------------- input parsing


def _check_no_inf(name: str, x: torch.Tensor) -> bool:
    """Infinite dissimilarities make every comparison NaN: refuse them by name (NaN is allowed,
    it marks missing pairs as in rsatoolbox). Returns whether all entries are finite."""
    if _all_finite(x):
        return True
    inf = torch.isinf(x.detach())
    if bool(inf.any()):
        where = torch.nonzero(inf.reshape(-1, x.shape[-1]).any(0)).flatten().tolist()
        raise DegenerateDataError(
            f"{name} contains {int(inf.sum())} infinite dissimilarities (at vector positions "
            f"{where[:10]}); comparisons of infinite values are undefined: remove them or "
            "mark them missing with NaN"
        )
    return False


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every entry is finite, by one reduction: NaN and inf propagate into the sum (a
    sum that overflows from finite entries only says False, and the callers look closer).

    On CPU the sum is NumPy's: a torch reduction wakes torch's pool of threads, which costs
    more than summing the 300k dissimilarities of 70 RDMs of 92 conditions.
    """
    d = x.detach()
    if d.device.type == "cpu" and d.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(d.numpy().sum()))
    return bool(torch.isfinite(d.sum()))


def _upper(square: torch.Tensor) -> torch.Tensor:
    """Upper triangle (row-major, as squareform) by index: differentiable, no parallel region.

    (``torch.triu_`` opens an OpenMP region that costs milliseconds on a busy machine even for
    a 5×5 mask, so indices are used here.)
    """
    n = square.shape[-1]
    rows, cols = torch.triu_indices(n, n, offset=1, device=square.device)
    return square[..., rows, cols]


def _describe(n_cond: int | None, k: int) -> str:
    return f"{n_cond} conditions ({k} dissimilarities)" if n_cond else f"{k} dissimilarities"


def _rsa_vectors(name: str, rdm: Any) -> tuple[np.ndarray, int | None]:
    """(n, k) float64 vectors from rsatoolbox RDMs or a NumPy array (as rsatoolbox reads it)."""
    if hasattr(rdm, "get_vectors"):
        return np.asarray(rdm.get_vectors(), dtype=np.float64), int(rdm.n_cond)
    if isinstance(rdm, np.ndarray):
        if rdm.ndim not in (1, 2):
            raise InvalidArgumentError(
                f"{name} as a NumPy array must be an RDM vector (k,) or vectors (n, k); got "
                f"shape {rdm.shape}"
            )
        vectors = np.atleast_2d(np.asarray(rdm, dtype=np.float64))
        return vectors, n_conditions_from_length(vectors.shape[1])
    raise InvalidTypeError(
        f"{name} must be rsatoolbox RDMs, a NumPy array or a torch.Tensor; got {type(rdm).__name__}"
    )


def _looks_square(name: str, x: torch.Tensor) -> bool:
    """Whether a 2-d tensor is one square RDM: square with a (near-)zero or NaN diagonal.

    A square RDM that is not symmetric is refused rather than silently read as vectors.
    """
    if x.shape[0] != x.shape[1] or x.shape[0] < 2:
        return False
    d = x.detach()
    finite = d[torch.isfinite(d)]
    scale = float(finite.abs().amax()) if finite.numel() else 0.0
    diag = torch.diagonal(d)
    if not bool(((diag.abs() <= _SQUARE_RTOL * scale) | torch.isnan(diag)).all()):
        return False
    _check_symmetric(name, d, scale)
    return True


def _check_symmetric(name: str, d: torch.Tensor, scale: float) -> None:
    close = torch.isclose(d, d.T, rtol=_SQUARE_RTOL, atol=_SQUARE_RTOL * scale, equal_nan=True)
    if not bool(close.all()):
        i, j = torch.nonzero(~close)[0].tolist()
        raise DegenerateDataError(
            f"{name} is a square ({d.shape[0]}, {d.shape[1]}) tensor with a zero diagonal but is "
            f"not symmetric ({name}[{i}, {j}] = {float(d[i, j]):.6g} vs {name}[{j}, {i}] = "
            f"{float(d[j, i]):.6g}); an RDM must be symmetric. Symmetrise it ((x + x.T) / 2) or "
            "pass square=False to read its rows as RDM vectors"
        )


def _tensor_vectors(
    name: str, rdm: Any, square: bool | None, ref: torch.Tensor
) -> tuple[torch.Tensor, int | None]:
    """(n, k) vectors on ``ref``'s device from a tensor (vector/stack/square) or RDMs."""
    if not isinstance(rdm, torch.Tensor):
        vectors, n_cond = _rsa_vectors(name, rdm)
        return torch.from_numpy(vectors).to(ref.device), n_cond
    x = rdm if torch.is_floating_point(rdm) else rdm.to(torch.float64)
    if x.ndim == 1:
        return x[None], n_conditions_from_length(x.shape[0])
    if x.ndim == 2:
        is_square = _looks_square(name, x) if square is None else square
        if is_square and x.shape[0] != x.shape[1]:
            raise InvalidArgumentError(
                f"{name} with square=True must be (n_cond, n_cond); got {tuple(x.shape)}"
            )
        if is_square:
            if square:
                d = x.detach()
                finite = d[torch.isfinite(d)]
                _check_symmetric(name, d, float(finite.abs().amax()) if finite.numel() else 0.0)
            return _upper(x)[None], x.shape[0]
        return x, n_conditions_from_length(x.shape[1])
    if x.ndim == 3:
        if x.shape[1] != x.shape[2] or x.shape[1] < 2:
            raise InvalidArgumentError(
                f"{name} as a 3-d tensor must be square RDMs (n_rdms, n_cond, n_cond); got "
                f"shape {tuple(x.shape)}"
            )
        return _upper(x), x.shape[1]
    raise InvalidArgumentError(
        f"{name} must be a vector (k,), vectors (n, k), a square RDM (n_cond, n_cond) or "
        f"squares (n, n_cond, n_cond); got a {x.ndim}-d tensor of shape {tuple(x.shape)}"
    )


def _result_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if dtype.is_floating_point else torch.float64


def _as_tensor(x: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(
        dtype=like.dtype, device=like.device
    )


def _drop_nan(
    a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """rsatoolbox's rule: drop positions NaN in any RDM of ``a``; ``b`` must agree."""
    # One reduction each (NaN propagates; an overflowing sum just takes the exact path below).
    if _all_finite(a) and _all_finite(b):
        return a, b, None
    _check_no_inf("a", a)
    _check_no_inf("b", b)
    nan_a = torch.isnan(a.detach()).reshape(-1, a.shape[-1]).any(0)
    nan_b = torch.isnan(b.detach()).reshape(-1, b.shape[-1]).any(0)
    if not (bool(nan_a.any()) or bool(nan_b.any())):
        return a, b, None
    if not bool((nan_a == nan_b).all()):
        where = torch.nonzero(nan_a != nan_b).flatten().tolist()[:10]
        raise InvalidArgumentError(
            "rdm1 and rdm2 have NaN at different dissimilarities (positions "
            f"{where} of the vectors); as in rsatoolbox, NaN positions must agree"
        )
    valid = ~nan_a
    return a[..., valid], b[..., valid], valid


def _check_n_conditions(n_conditions: int | None, k_full: int) -> int:
    inferred = n_conditions_from_length(k_full)
    if n_conditions is None:
        if inferred is None:
            raise InvalidArgumentError(
                f"the vectors' length {k_full} is not n(n-1)/2 for any number of conditions n; "
                "pass upper-triangle RDM vectors (or valid= for NaN-free subsets)"
            )
        return inferred
    if inferred != n_conditions:
        raise InvalidArgumentError(
            f"n_conditions={n_conditions} needs {n_conditions * (n_conditions - 1) // 2} "
            f"dissimilarities per RDM; got {k_full}"
        )
    return n_conditions


def _check_sigma(
    sigma_k: torch.Tensor | None, n_cond: int, like: torch.Tensor
) -> torch.Tensor | None:
    if sigma_k is None:
        return None
    sigma = _as_tensor(sigma_k, like)
    if sigma.shape not in ((n_cond,), (n_cond, n_cond)):
        raise InvalidArgumentError(
            f"sigma_k must have shape ({n_cond},) or ({n_cond}, {n_cond}) for RDMs of "
            f"{n_cond} conditions; got {tuple(sigma.shape)}"
        )
    if not bool(torch.isfinite(sigma).all()):
        raise DegenerateDataError("sigma_k must be finite")
    if sigma.ndim == 1 and not bool((sigma > 0).all()):
        raise InvalidArgumentError("sigma_k as variances (n_cond,) must be positive")
    return sigma


# ------------------------------------------------------------------------------ kernels


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of all row pairs; 0 where a row has zero length (as rsatoolbox's ``_cosine``).

    Each row is first divided by its largest |entry| (detached; the cosine is scale-free, so
    value and gradient are unchanged): norms of rows at 1e-200 or 1e200 then neither underflow
    to 0 nor overflow to inf.
    """
    a, b = _unit_max(a), _unit_max(b)
    na = torch.linalg.vector_norm(a, dim=-1)
    nb = torch.linalg.vector_norm(b, dim=-1)
    # Dividing each side first keeps the zero rows zero (0 / 1) and their gradient finite.
    a = a / torch.where(na > 0, na, torch.ones_like(na)).unsqueeze(-1)
    b = b / torch.where(nb > 0, nb, torch.ones_like(nb)).unsqueeze(-1)
    return a @ b.transpose(-1, -2)


def _cosine_of_ranks(
    a: torch.Tensor, b: torch.Tensor, na: torch.Tensor, nb: torch.Tensor
) -> torch.Tensor:
    """:func:`_cosine` for centred ranks ``a``, ``b`` with row norms ``na``, ``nb``: one
    product, then division by the two norms.

    Ranks are bounded by k, so neither the products nor the norms can overflow or underflow
    and the copies :func:`_cosine` makes to guard against that are not needed. Rows of ties
    only (norm 0) give 0, as in :func:`_cosine`. On CPU the (n1, n2) scaling is done in place
    with NumPy: five small torch operations cost 0.2–0.4 ms there, 7–13% of the whole Spearman
    comparison of 50 × 20 RDMs of 92 conditions (docs/benchmarks-compare.md).
    """
    products = a @ b.transpose(-1, -2)
    if products.device.type == "cpu":
        out = products.numpy()
        for norms, axis in ((na.numpy(), -1), (nb.numpy(), -2)):
            inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            out *= np.expand_dims(inverse, axis)
        return products
    scale = na.unsqueeze(-1) * nb.unsqueeze(-2)
    return torch.where(scale > 0, products / torch.where(scale > 0, scale, 1.0), 0.0)


def _unit_max(x: torch.Tensor) -> torch.Tensor:
    size = x.detach().abs().amax(dim=-1, keepdim=True)
    return x / torch.where(size > 0, size, torch.ones_like(size))


def _whiten(
    v: torch.Tensor, valid: torch.Tensor | None, n: int, sigma: torch.Tensor | None
) -> torch.Tensor:
    """rsatoolbox's ``_cov_weighting``: double-centred −½·RDM (off-diagonal × √2, diagonal).

    Without NaN the centring subtracts row and column means and adds the grand mean; with
    NaN positions it is the weighted projection rsatoolbox uses, expressed through the
    (n, n) normal matrix A = ½(diag(degree) + adjacency) + I of the valid pairs.
    """
    if valid is None:
        g = square_from_upper_tri(-0.5 * v)
        m = g.sum(dim=-1) / n
        mm = g.sum(dim=(-2, -1), keepdim=True) / (n * n)
        g = g - m.unsqueeze(-1) - m.unsqueeze(-2) + mm
    else:
        idx = torch.nonzero(valid).flatten()
        full = v.new_zeros(*v.shape[:-1], valid.numel()).index_copy(-1, idx, -0.5 * v)
        g = square_from_upper_tri(full)
        adj = square_from_upper_tri(valid.to(v.dtype))
        eye = torch.eye(n, dtype=v.dtype, device=v.device)
        normal = 0.5 * (torch.diag(adj.sum(dim=-1)) + adj) + eye
        # z = y A⁻¹ with y the row sums of the valid entries (A is symmetric)
        z = torch.linalg.solve(normal, g.sum(dim=-1).transpose(-1, -2)).transpose(-1, -2)
        g = g - 0.5 * (z.unsqueeze(-1) + z.unsqueeze(-2))
        keep = adj.bool() | torch.eye(n, dtype=torch.bool, device=v.device)
        g = g * keep
    if sigma is not None:
        root = torch.sqrt(sigma)
        g = g / root.unsqueeze(-1) / root
    return torch.cat((_upper(g) * math.sqrt(2.0), torch.diagonal(g, dim1=-2, dim2=-1)), -1)


def _cosine_cov_identity(
    a: torch.Tensor, b: torch.Tensor, n: int, centred: bool = False
) -> torch.Tensor:
    """``_whiten`` + ``_cosine`` for sigma_k None and no NaN, on the vectors: O(n_rdms·k).

    The whitened vector w of an RDM v holds the double-centred G = H(−½V)H (off-diagonal
    entries × √2, then the diagonal), so w_a·w_b = ⟨G_a, G_b⟩_F. Splitting v = c + δ (its mean
    c and the rest) the cross terms vanish (G(1) = ½H and ⟨H, G(δ)⟩ ∝ Σδ = 0), leaving

        ⟨G_a, G_b⟩ = ¼(n − 1)·c_a·c_b + ½(δ_a·δ_b − R_a·R_b / n),

    with R the row sums of the square RDM of δ. No (n, n) matrix is formed, and splitting off
    the mean first avoids the cancellation of the raw expansion.
    """
    if centred:  # corr_cov: the means are already zero
        da, db, ca, cb = a, b, a.new_zeros(*a.shape[:-1], 1), b.new_zeros(*b.shape[:-1], 1)
    else:
        ca, cb = a.mean(dim=-1, keepdim=True), b.mean(dim=-1, keepdim=True)
        da, db = a - ca, b - cb
    ra, rb = _row_sums(da, n), _row_sums(db, n)
    scale = 0.25 * (n - 1)
    gram = 0.5 * (da @ db.transpose(-1, -2) - (ra @ rb.transpose(-1, -2)) / n)
    gram = gram + scale * ca * cb.transpose(-1, -2)

    def sq_norm(d: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        dd = torch.linalg.vector_norm(d, dim=-1) ** 2
        n2 = 0.5 * (dd - (r * r).sum(-1) / n) + scale * c.squeeze(-1) ** 2
        return n2.clamp_min(0.0)

    na, nb = sq_norm(da, ra, ca), sq_norm(db, rb, cb)
    # zero-length whitened vectors give 0, as rsatoolbox's _cosine (gradients stay finite)
    na = torch.sqrt(torch.where(na > 0, na, torch.ones_like(na)))
    nb = torch.sqrt(torch.where(nb > 0, nb, torch.ones_like(nb)))
    return gram / na.unsqueeze(-1) / nb.unsqueeze(-2)


def _row_sums(x: torch.Tensor, n: int) -> torch.Tensor:
    """Row sums (..., n) of the symmetric zero-diagonal squares of upper-triangle vectors."""
    rows, cols = torch.triu_indices(n, n, offset=1, device=x.device)
    flat = x.reshape(-1, x.shape[-1])
    out = flat.new_zeros(flat.shape[0], n).index_add(1, rows, flat).index_add(1, cols, flat)
    return out.reshape(*x.shape[:-1], n)


def _rdm_covariance(sigma: torch.Tensor, valid: torch.Tensor | None, n: int) -> torch.Tensor:
    """V = ξ∘ξ with ξ = CΣCᵀ over the (valid) pairs: rsatoolbox's ``_get_v`` made dense."""
    rows, cols = torch.triu_indices(n, n, offset=1, device=sigma.device)
    if valid is not None:
        rows, cols = rows[valid], cols[valid]
    if rows.numel() > _MAX_K_FULL_SIGMA:
        raise InvalidArgumentError(
            f"a full (n_cond, n_cond) sigma_k needs a dense {rows.numel()}² covariance of the "
            f"dissimilarities; supported up to {_MAX_K_FULL_SIGMA} dissimilarities "
            f"(about 200 conditions). Pass the diagonal, sigma_k=torch.diagonal(sigma_k)"
        )
    r, c = rows.unsqueeze(-1), cols.unsqueeze(-1)
    xi = sigma[r, rows] - sigma[r, cols] - sigma[c, rows] + sigma[c, cols]
    return xi * xi


def _cosine_full_sigma(
    a: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor, valid: torch.Tensor | None, n: int
) -> torch.Tensor:
    v = _rdm_covariance(sigma, valid, n)
    chol, info = torch.linalg.cholesky_ex(v)
    if bool(info.any()):
        raise DegenerateDataError(
            "sigma_k gives a singular dissimilarity covariance; is it positive definite?"
        )

    # Whitening by the Cholesky factor: xᵀV⁻¹y = (L⁻¹x)·(L⁻¹y), so the cosine of whitened rows.
    def whiten(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).transpose(0, 1)
        w = torch.linalg.solve_triangular(chol, flat, upper=False)
        return w.transpose(0, 1).reshape(x.shape)

    wa, wb = whiten(a), whiten(b)
    # rsatoolbox divides by the V-norms without a zero check: a zero vector gives NaN (0/0)
    zero_a = (torch.linalg.vector_norm(wa.detach(), dim=-1) == 0).unsqueeze(-1)
    zero_b = (torch.linalg.vector_norm(wb.detach(), dim=-1) == 0).unsqueeze(-2)
    out = _cosine(wa, wb)
    return out.masked_fill(zero_a | zero_b, float("nan"))
