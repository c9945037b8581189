"""Noise ceiling of a set of brain RDMs: leave-one-subject-out (lower) and all-subjects (upper).

Matches ``rsatoolbox.inference.boot_noise_ceiling(rdms, method, rdm_descriptor)``: RDMs are grouped
by ``rdm_descriptor`` (e.g. subject, so that both sessions of a subject are held out together); for
each group, the RDMs of the other groups are pooled the way
``rsatoolbox.util.inference_util.pool_rdm`` pools them for the method (normalised and averaged, or
rank-averaged) and compared with each held-out RDM (lower bound); the pool of all RDMs compared with
the held-out RDMs gives the upper bound. Both are averaged over the held-out RDMs of a group, then
over groups.

Examples
--------
>>> import numpy as np, rsatoolbox
>>> rdms = rsatoolbox.rdm.RDMs(np.random.default_rng(0).random((4, 10)))
>>> low, high = noise_ceiling(rdms, "corr")
>>> bool(low <= high)
True
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from brainrdl.errors import DegenerateDataError, InvalidArgumentError, InvalidTypeError
from brainrdl.rsa.methods import NOISE_CEILING_METHODS
from brainrdl.stats.bootstrap import compare_all_pairs, weighted_ranks
from brainrdl.validation import check_choice

POOL_METHODS = NOISE_CEILING_METHODS  # alias kept for existing imports


AUTO = "auto"
_UNSET = object()


def subject_groups(rdms, subject_descriptor: str | None = AUTO, where: str = "the RDMs"):
    """Subject label of each RDM, or None when every RDM is its own subject.

    The one rule for ``subject_descriptor`` across :func:`noise_ceiling` and
    :func:`brainrdl.compare_layers`: ``"auto"`` (default) groups by the rdm descriptor
    ``"subject"`` when the RDMs have one (so two sessions of a subject count as one subject:
    held out together, resampled together), else each RDM alone; a name groups by that rdm
    descriptor (a KeyError when absent); None or ``"index"``: each RDM alone.

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> r = rsatoolbox.rdm.RDMs(np.ones((3, 3)), rdm_descriptors={"subject": ["a", "a", "b"]})
    >>> subject_groups(r).tolist(), subject_groups(r, None)
    (['a', 'a', 'b'], None)
    """
    if subject_descriptor in (None, "index"):
        return None
    descriptors = getattr(rdms, "rdm_descriptors", {})
    if subject_descriptor == AUTO:
        return np.asarray(descriptors["subject"]) if "subject" in descriptors else None
    if subject_descriptor not in descriptors:
        raise KeyError(
            f"subject_descriptor={subject_descriptor!r} (the rdm_descriptor that groups RDMs by "
            f"subject) is not an rdm descriptor of {where}; available: {sorted(descriptors)}"
        )
    return np.asarray(descriptors[subject_descriptor])


def noise_ceiling(
    rdms,
    method: str = "cosine",
    subject_descriptor: str | None = AUTO,
    *,
    rdm_descriptor: str | None = _UNSET,  # type: ignore[assignment]
    groups: np.ndarray | list | None = None,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Lower and upper noise-ceiling bounds of brain RDMs, as rsatoolbox's ``boot_noise_ceiling``.

    Parameters
    ----------
    rdms
        rsatoolbox ``RDMs`` (several subjects / sessions), or an array / tensor of RDM vectors
        (S, K) or square RDMs (S, n, n).
    method : str
        Comparison method (``brainrdl.compare`` names).
    subject_descriptor : str | None
        rdm descriptor that groups the RDMs by subject (held out together), as in
        :func:`brainrdl.compare_layers` (see :func:`subject_groups`): ``"auto"`` (default) uses
        ``"subject"`` when present, so sessions of one subject are one subject; ``"index"`` or
        None: each RDM alone. Ignored when ``groups`` is given or ``rdms`` is not an ``RDMs``.
    rdm_descriptor : str | None
        rsatoolbox's name for ``subject_descriptor``; when given it is used instead.
    groups : np.ndarray | list | None
        (S,) group label per RDM, instead of a descriptor.
    device : torch.device | str | None
        Where to compute (default CPU, or the tensor's device).

    Returns
    -------
    tuple of float
        ``(lower, upper)``.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]])
    >>> [round(b, 4) for b in noise_ceiling(v, "spearman")]
    [0.3333, 0.6667]
    """
    check_choice("method", method, POOL_METHODS)
    if rdm_descriptor is not _UNSET:
        subject_descriptor = rdm_descriptor
    vectors, groups = _as_vectors(rdms, subject_descriptor, groups)
    if device is None:
        device = vectors.device if isinstance(vectors, torch.Tensor) else "cpu"
    y = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor) else vectors)
    y = y.to(device=device, dtype=torch.float64)
    low, high = noise_ceiling_vectors(y, groups, method)
    return float(low), float(high)


def noise_ceiling_vectors(
    y: torch.Tensor, groups: np.ndarray | list | None, method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise ceiling of RDM vectors ``y`` (S, K) grouped by ``groups`` (S,); tensors out.

    Examples
    --------
    >>> import torch
    >>> y = torch.rand(3, 6, dtype=torch.float64)
    >>> low, high = noise_ceiling_vectors(y, None, "corr")
    >>> bool(low <= high)
    True
    """
    if y.ndim != 2 or y.shape[0] < 1:
        raise InvalidArgumentError(
            f"brain RDMs must be (n_rdms, n_pairs) vectors; got {tuple(y.shape)}")
    labels = np.arange(y.shape[0]) if groups is None else np.asarray(groups)
    if labels.shape != (y.shape[0],):
        raise InvalidArgumentError(
            f"groups must have one label per RDM ({y.shape[0]}); got {labels.shape}")
    check_not_constant_rdms("brain RDMs", y, method)
    y = _scaled(y, method)
    unique = np.unique(labels)
    if method in ("kendall", "tau-b", "tau-a"):  # once per ceiling, not once per held-out group
        warnings.warn("Noise ceiling for tau based on averaged ranks!", stacklevel=3)
    pooled_all = pool_vectors(y, method, warn=False)
    if len(unique) < 2:
        # rsatoolbox's leave-one-out with one group uses all RDMs as both train and test set
        value = compare_all_pairs(pooled_all, y, method).mean()
        return _check_ceiling(value, value, method)
    lows, highs = [], []
    for label in unique:
        test = torch.as_tensor(labels == label, device=y.device)
        pooled_train = pool_vectors(y[~test], method, warn=False)
        lows.append(compare_all_pairs(pooled_train, y[test], method).mean())
        highs.append(compare_all_pairs(pooled_all, y[test], method).mean())
    low, high = torch.stack(lows).mean(), torch.stack(highs).mean()
    return _check_ceiling(low, high, method)


def _check_ceiling(low: torch.Tensor, high: torch.Tensor, method: str):
    """NaN bounds mean a pooled RDM came out constant (the RDMs cancel when averaged): say so."""
    if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):
        raise DegenerateDataError(
            f"brain RDMs: the noise ceiling is undefined for method={method!r}: the pooled "
            "(averaged) RDM of some subjects is constant, so its comparison is 0/0. The RDMs "
            "have too little in common (or too few dissimilarities) for a noise ceiling"
        )
    return low, high


def pool_vectors(y: torch.Tensor, method: str, *, warn: bool = True) -> torch.Tensor:
    """The (1, K) pooled RDM vector that rsatoolbox's ``pool_rdm`` builds for ``method``.

    Examples
    --------
    >>> import torch
    >>> pool_vectors(torch.tensor([[1.0, 2.0], [3.0, 6.0]]), "cosine").shape
    torch.Size([1, 2])
    """
    v = _scaled(y.to(torch.float64), method)
    if method in ("cosine", "cosine_cov"):
        v = v / torch.sqrt(torch.nanmean(v**2, dim=1, keepdim=True))
    elif method in ("corr", "corr_cov"):
        v = v - torch.nanmean(v, dim=1, keepdim=True)
        v = v / _nanstd(v)
    elif method in ("spearman", "rho-a", "kendall", "tau-b", "tau-a"):
        if method in ("kendall", "tau-b", "tau-a") and warn:
            warnings.warn("Noise ceiling for tau based on averaged ranks!", stacklevel=3)
        v = _nan_ranks(v)
    pooled = _nan_mean(v)
    if method in ("corr", "corr_cov"):
        pooled = pooled - torch.min(pooled[torch.isfinite(pooled)])
    return pooled


def check_not_constant_rdms(name: str, y: torch.Tensor, method: str) -> torch.Tensor:
    """Refuse RDM vectors (S, K) whose comparison under ``method`` is undefined.

    Correlation- and rank-based methods cannot compare a constant RDM (all dissimilarities
    equal up to rounding: a spread of at most 100 ulps of the largest |entry|, i.e.
    ``max - min <= 100 * eps * max|entry|``): its pooled, normalised version is 0/0. Cosine
    methods only need a non-zero RDM; ``neg_riem_dist`` (a distance of the RDMs' second-moment
    matrices) needs neither. Non-finite entries other than NaN (missing pairs) are refused for
    every method.

    Examples
    --------
    >>> import torch
    >>> check_not_constant_rdms("brain RDMs", torch.rand(3, 6), "corr").shape
    torch.Size([3, 6])
    """
    if bool(torch.isinf(y).any()):
        raise DegenerateDataError(f"{name} contain infinite dissimilarities; remove them")
    finite = torch.isfinite(y)
    if not bool(finite.any(dim=1).all()):
        rows = torch.nonzero(~finite.any(dim=1)).flatten().tolist()
        raise DegenerateDataError(f"{name}: RDMs {rows[:10]} hold no finite dissimilarity")
    big = torch.where(finite, y, torch.full_like(y, -torch.inf)).amax(dim=1)
    small = torch.where(finite, y, torch.full_like(y, torch.inf)).amin(dim=1)
    size = torch.maximum(big.abs(), small.abs())
    if method in ("cosine", "cosine_cov"):
        bad = size == 0
        what = "all zero"
    elif method == "neg_riem_dist":
        return y
    else:
        bad = (big - small) <= 100 * torch.finfo(y.dtype).eps * size
        what = "constant (all dissimilarities equal)"
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        raise DegenerateDataError(
            f"{name}: RDMs {rows[:10]} ({len(rows)} of {y.shape[0]}) are {what}; "
            f"method={method!r} cannot compare them (0/0), so there is no noise ceiling. Drop "
            "those RDMs (e.g. a region without signal) or check how they were computed"
        )
    return y


def _scaled(v: torch.Tensor, method: str) -> torch.Tensor:
    """For the scale-free methods that square dissimilarities (cosine, corr), each RDM divided by
    its largest |entry|: squares then neither underflow (1e-200) nor overflow (1e200), and no
    result changes. Rank methods square no dissimilarity (and a division could merge two
    neighbouring floats into a tie), so they are left alone."""
    if method not in ("cosine", "cosine_cov", "corr", "corr_cov"):
        return v
    size = torch.where(torch.isnan(v), torch.zeros_like(v), v.abs()).amax(dim=1, keepdim=True)
    return v / torch.where(size > 0, size, torch.ones_like(size))


def _nanstd(v: torch.Tensor) -> torch.Tensor:
    mean = torch.nanmean(v, dim=1, keepdim=True)
    return torch.sqrt(torch.nanmean((v - mean) ** 2, dim=1, keepdim=True))


def _nan_mean(v: torch.Tensor) -> torch.Tensor:
    # as rsatoolbox: the columns kept are those finite in the first RDM; NaN elsewhere propagates
    keep = ~torch.isnan(v[0])
    out = torch.full((1, v.shape[1]), float("nan"), dtype=v.dtype, device=v.device)
    out[0, keep] = v[:, keep].mean(0)
    return out


def _nan_ranks(v: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(v)
    out = torch.full_like(v, float("nan"))
    for i in range(v.shape[0]):
        ranks = weighted_ranks(v[i : i + 1], finite[i : i + 1].to(v.dtype))[0, 0]
        out[i] = torch.where(finite[i], ranks, out[i])
    return out


def _as_vectors(rdms, rdm_descriptor: str | None, groups) -> tuple:
    """(S, K) vectors and group labels from RDMs, arrays or tensors."""
    try:
        from rsatoolbox.rdm import RDMs
    except ImportError:  # pragma: no cover - rsatoolbox is a dependency
        RDMs = ()
    if isinstance(rdms, RDMs):
        if groups is None:
            groups = subject_groups(rdms, rdm_descriptor)
        return rdms.get_vectors(), groups
    if isinstance(rdms, (np.ndarray, torch.Tensor, list)):
        arr = rdms if isinstance(rdms, torch.Tensor) else np.asarray(rdms, dtype=float)
        if arr.ndim == 3:
            if arr.shape[1] != arr.shape[2]:
                raise InvalidArgumentError(
                    f"rdms as matrices must be square, (S, n, n); got shape {tuple(arr.shape)}")
            n = arr.shape[-1]
            iu, ju = np.triu_indices(n, 1)
            arr = arr[:, iu, ju]
        if arr.ndim != 2:
            raise InvalidArgumentError(
                f"rdms must be RDMs, (S, K) vectors or (S, n, n) matrices; got shape {arr.shape}"
            )
        return arr, groups
    raise InvalidTypeError(
        f"rdms must be rsatoolbox RDMs, an array or a tensor; got {type(rdms).__name__}"
    )


def describe_noise_ceiling(low: float, high: float, n_rdms: int) -> str:
    """The noise ceiling as a reader should see it; with fewer than two brain RDMs there is none.

    With one subject the "ceiling" compares that RDM with itself and reads 1.000–1.000, which
    says nothing about the data's reliability: report its absence instead.

    Examples
    --------
    >>> describe_noise_ceiling(0.284, 0.69, 3)
    'noise ceiling 0.284-0.690'
    >>> describe_noise_ceiling(1.0, 1.0, 1)
    'no noise ceiling (one brain RDM: a ceiling needs several subjects)'
    """
    if n_rdms < 2:
        return "no noise ceiling (one brain RDM: a ceiling needs several subjects)"
    return f"noise ceiling {low:.3f}-{high:.3f}"
