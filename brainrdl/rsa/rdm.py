"""The RDM engine: :func:`calc_rdm` for rsatoolbox Datasets and torch tensors.

rsatoolbox Datasets give rsatoolbox ``RDMs`` with rsatoolbox's numbers and descriptors (computed
on torch, float64, on any device); tensors give differentiable tensors (see
:mod:`brainrdl.rsa.distances`). Cross-validated measures live in :mod:`brainrdl.rsa.crossnobis`.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from brainrdl.errors import DegenerateDataError, InvalidArgumentError, InvalidTypeError
from brainrdl.rsa import crossnobis as cv
from brainrdl.rsa.distances import _CONSTANT_EPS, _pairwise, check_precision, upper_tri
from brainrdl.rsa.methods import CV_RDM_METHODS, RDM_DATASET_METHODS, RDM_TENSOR_METHODS
from brainrdl.validation import (
    check_choice,
    check_descriptor,
    check_device,
    check_finite,
    check_patterns,
    check_scalar,
)

DATASET_METHODS = RDM_DATASET_METHODS  # alias kept for existing imports
_CV_METHODS = CV_RDM_METHODS

# dissimilarity_measure names as rsatoolbox writes them
_MEASURE = {
    "euclidean": "squared euclidean",
    "correlation": "correlation",
    "mahalanobis": "squared mahalanobis",
    "crossnobis": "crossnobis",
    "poisson": "poisson",
    "poisson_cv": "poisson_cv",
}


def calc_rdm(
    data: Any,
    method: str = "euclidean",
    descriptor: str | None = None,
    noise: Any = None,
    cv_descriptor: str | None = None,
    prior_lambda: float = 1,
    prior_weight: float = 0.1,
    *,
    device: str | torch.device | None = None,
    vector: bool = False,
    remove_mean: bool = False,
) -> Any:
    """Representational dissimilarity matrices, rsatoolbox's numbers computed with torch.

    Parameters
    ----------
    data : Any
        An ``rsatoolbox.data.Dataset`` (or a list of them), or a torch tensor of patterns
        (n_conditions, n_channels) or (..., n_conditions, n_channels).
    method : str
        Datasets: ``"euclidean"``, ``"correlation"``, ``"mahalanobis"``, ``"crossnobis"``,
        ``"poisson"``, ``"poisson_cv"``. Tensors: ``"euclidean"``, ``"correlation"``,
        ``"cosine"``, ``"mahalanobis"``, ``"poisson"``. Scalings follow rsatoolbox (squared
        distances divided by the number of channels).
    descriptor : str | None
        obs_descriptor whose values define the conditions; observations sharing a value are
        averaged (rows then sorted by that value, as rsatoolbox does). None: one row per
        observation. Required for cross-validated methods.
    noise : Any
        Noise precision for mahalanobis/crossnobis, as rsatoolbox takes it
        (``rsatoolbox.data.prec_from_residuals`` etc.): a (D, D) array or tensor, a (D,)
        diagonal, or for crossnobis a list (or (n_folds, D, D) array) of per-fold precisions of
        the fold means. With a list of Datasets: a list with one entry per Dataset, or one
        (D, D) precision shared by all (rsatoolbox would index a single array by Dataset).
    cv_descriptor : str | None
        obs_descriptor defining the cross-validation folds (crossnobis, poisson_cv). None: as
        rsatoolbox, the k-th repetition of every condition forms fold k (needs equal repetitions).
    prior_lambda, prior_weight : float
        Prior of the poisson measures: rates are ``(x + prior_lambda·prior_weight) /
        (1 + prior_weight)``.
    device : str | torch.device | None
        torch device to compute on (Datasets: default CPU; tensors: default the tensor's own).
    vector : bool
        Tensors only: return the upper triangle (..., n·(n−1)/2) instead of the square matrix.
    remove_mean : bool
        Datasets only, as rsatoolbox: subtract each pattern's mean over channels first
        (euclidean, mahalanobis, crossnobis).

    Returns
    -------
    rsatoolbox.rdm.RDMs or torch.Tensor
        For Datasets, ``RDMs`` equal to ``rsatoolbox.rdm.calc_rdm`` (dissimilarities, measure,
        descriptors, rdm_descriptors, pattern_descriptors); a list of Datasets gives one RDMs
        object (``concat``, or ``from_partials`` when ``descriptor`` is given).
        For tensors, the RDM on the tensor's device and dtype, differentiable.

    Notes
    -----
    ``poisson_cv`` here averages the cross-validated divergence over ALL leave-one-fold-out
    folds. rsatoolbox 0.3.2 overwrites its result in the fold loop and so returns only the last
    fold (the highest ``cv_descriptor`` value held out), a noisier estimate; the two agree only
    when there is a single fold to hold out. Crossnobis follows rsatoolbox exactly: with one
    precision, each fold's mean is compared with the mean of all other folds' observations; with
    a list, every pair of folds is compared, with the pair's pooled precision.

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> ds = rsatoolbox.data.Dataset(
    ...     np.arange(12.0).reshape(4, 3) ** 2,
    ...     obs_descriptors={"stim": ["a", "b", "a", "b"], "run": [0, 0, 1, 1]})
    >>> calc_rdm(ds, "euclidean", descriptor="stim").dissimilarities.round(2)
    array([[1113.]])
    >>> calc_rdm(ds, "crossnobis", descriptor="stim", cv_descriptor="run").n_cond
    2
    >>> import torch
    >>> calc_rdm(torch.randn(3, 5, 8), "correlation", vector=True).shape
    torch.Size([3, 10])
    """
    check_device("device", device)
    check_scalar("prior_lambda", prior_lambda, float)
    check_scalar("prior_weight", prior_weight, float, min_val=0.0)
    for flag, value in (("vector", vector), ("remove_mean", remove_mean)):
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidTypeError(f"{flag} must be True or False; got {value!r}")
    options = _Options(method, descriptor, noise, cv_descriptor, prior_lambda, prior_weight,
                       device, bool(vector), bool(remove_mean))
    if isinstance(data, torch.Tensor):
        if remove_mean:
            raise InvalidArgumentError(
                "remove_mean=True applies to rsatoolbox Datasets only; for a tensor, subtract "
                "each pattern's mean yourself (x - x.mean(-1, keepdim=True))")
        return _calc_tensor(data, options)
    if vector:
        raise InvalidArgumentError(
            "vector=True applies to tensor data only; Datasets give RDMs objects")
    if _is_dataset(data):
        return _calc_dataset(data, options)
    if isinstance(data, Sequence) and not isinstance(data, str) and len(data) > 0 and all(
        _is_dataset(d) for d in data
    ):
        return _calc_dataset_list(list(data), options)
    raise InvalidTypeError(
        "data must be an rsatoolbox Dataset, a non-empty list of Datasets, or a torch tensor "
        f"(n_conditions, n_channels); got {type(data).__name__}"
    )


# --------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class _Options:
    """The arguments of :func:`calc_rdm`, checked once and handed down as one value."""

    method: str
    descriptor: str | None
    noise: Any
    cv_descriptor: str | None
    prior_lambda: float
    prior_weight: float
    device: Any
    vector: bool
    remove_mean: bool


def _calc_tensor(x: torch.Tensor, o: _Options) -> torch.Tensor:
    method, descriptor, noise, cv_descriptor = o.method, o.descriptor, o.noise, o.cv_descriptor
    device = o.device
    check_choice("method", method, RDM_TENSOR_METHODS)
    if descriptor is not None or cv_descriptor is not None:
        raise InvalidArgumentError(
            "descriptor and cv_descriptor apply to rsatoolbox Datasets only; for a tensor, "
            "rows already are the conditions (pass descriptor=None, cv_descriptor=None)"
        )
    if device is not None:
        x = x.to(device)
    if noise is not None:
        if method != "mahalanobis":
            raise InvalidArgumentError(
                f"noise is used by method='mahalanobis' only, not {method!r}")
        noise = _as_precision(noise, x.shape[-1], dtype=x.dtype, device=x.device)
    check_patterns("data", x)
    return _pairwise(x, method, noise, o.vector, o.prior_lambda, o.prior_weight)


# --------------------------------------------------------------------------- datasets


def _is_dataset(obj: Any) -> bool:
    return hasattr(obj, "measurements") and hasattr(obj, "obs_descriptors")


def _calc_dataset_list(datasets: list, o: _Options) -> Any:
    from rsatoolbox.rdm import concat
    from rsatoolbox.rdm.combine import from_partials

    noise, descriptor = o.noise, o.descriptor
    shared = noise is None or (_is_array_like(noise) and np.ndim(noise) == 2)
    if not shared and len(noise) != len(datasets):
        raise InvalidArgumentError(
            f"noise has {len(noise)} entries but data has {len(datasets)} Datasets; pass one "
            "precision per Dataset, or one (D, D) precision for all"
        )
    rdms = [
        _calc_dataset(ds, o if shared else replace(o, noise=noise[i]))
        for i, ds in enumerate(datasets)
    ]
    if descriptor is None:
        return concat(rdms)
    return from_partials(rdms, descriptor=descriptor)


def _calc_dataset(ds: Any, o: _Options) -> Any:
    method, descriptor, noise, cv_descriptor = o.method, o.descriptor, o.noise, o.cv_descriptor
    prior_lambda, prior_weight, device, remove_mean = (
        o.prior_lambda, o.prior_weight, o.device, o.remove_mean)
    check_choice("method", method, DATASET_METHODS)
    obs = ds.obs_descriptors
    if descriptor is not None:
        check_descriptor("descriptor", descriptor, obs.keys())
    device = torch.device("cpu") if device is None else torch.device(device)
    measurements = np.asarray(ds.measurements)
    if measurements.ndim != 2:
        raise InvalidArgumentError(
            "data.measurements must be 2-d (n_observations, n_channels); got shape "
            f"{measurements.shape}"
        )
    x = torch.as_tensor(measurements, dtype=torch.float64, device=device)
    check_finite("data.measurements", x, rows="observations")
    n_chan = x.shape[1]

    if method in _CV_METHODS:
        return _calc_cv(ds, x, o)
    if cv_descriptor is not None:
        # unused by this method (rsatoolbox ignores it), but a misspelt name is still an error
        check_descriptor("cv_descriptor", cv_descriptor, obs.keys())

    groups = _Groups(ds, descriptor)
    means = groups.means(x)
    _check_n_conditions(means.shape[0], descriptor)
    if remove_mean and method in ("euclidean", "mahalanobis"):
        means = means - means.mean(dim=1, keepdim=True)
    precision = None
    if method == "mahalanobis" and noise is not None:
        precision = _diagonal_if_diagonal(
            _as_precision(noise, n_chan, dtype=torch.float64, device=device))
    elif method == "correlation":
        _check_not_constant(means, groups)
    tensor_method = "euclidean" if method == "mahalanobis" and precision is None else method
    # data and precision were checked above: the kernel runs without re-validating (poisson's
    # rates > 0 is checked by the kernel itself, on these condition means)
    square = _pairwise(means, tensor_method, precision, False, prior_lambda, prior_weight)
    measure = "squared euclidean" if tensor_method == "euclidean" else _MEASURE[method]
    descriptors = {"noise": _stored_noise(noise)} if precision is not None else {}
    return groups.build_rdms(upper_tri(square), measure, descriptors)


def _calc_cv(ds: Any, x: torch.Tensor, o: _Options) -> Any:
    method, descriptor, noise, cv_descriptor = o.method, o.descriptor, o.noise, o.cv_descriptor
    prior_lambda, prior_weight, remove_mean = o.prior_lambda, o.prior_weight, o.remove_mean
    if descriptor is None:
        raise InvalidArgumentError(
            f"descriptor must name an obs_descriptor for method={method!r}: cross-validation "
            f"averages repeated measurements of each condition; available: "
            f"{list(ds.obs_descriptors)}"
        )
    groups = _Groups(ds, descriptor)
    _check_n_conditions(groups.n, descriptor)
    folds, fold_index, cv_name = _folds(ds, descriptor, cv_descriptor, groups)
    n_folds = len(folds)
    if n_folds < 2:
        raise InvalidArgumentError(
            f"{method} needs at least 2 cross-validation folds, but cv_descriptor="
            f"{cv_descriptor!r} gives only one ({[_py(f) for f in folds]}); pass a cv_descriptor "
            "such as the run or session, with every condition measured in at least two of its "
            "values"
        )
    cells = np.bincount(groups.inverse * n_folds + fold_index,
                        minlength=groups.n * n_folds).reshape(groups.n, n_folds)
    missing = np.argwhere(cells == 0).tolist()
    if missing:
        cond, fold = missing[0]
        raise InvalidArgumentError(
            f"cv_descriptor={cv_name!r}: condition {_py(groups.values[cond])!r} has no "
            f"observation in fold {_py(folds[fold])!r} ({len(missing)} condition/fold pairs "
            "are empty); every condition must be measured in every fold"
        )
    n_chan = x.shape[1]
    descriptors: dict[str, Any] = {}
    per_fold_noise = noise is not None and not (_is_array_like(noise) and np.ndim(noise) in (1, 2))
    if method == "crossnobis" and not per_fold_noise:
        precision = None
        if noise is not None:
            precision = _diagonal_if_diagonal(
                _as_precision(noise, n_chan, dtype=torch.float64, device=x.device))
        if np.all(cells == 1):
            # one observation per condition and fold (the usual design): the fold-major
            # (F, n, D) means are the rows of x themselves, a view when x is stored run by run
            square = cv.crossnobis_fold_major(
                _fold_major_rows(x, groups.inverse, fold_index, groups.n, n_folds),
                precision, remove_mean=remove_mean)
        else:
            sums, counts = groups.fold_sums(x, fold_index, n_folds)
            square = cv.crossnobis_from_fold_sums(sums, counts, precision,
                                                  remove_mean=remove_mean)
        # rsatoolbox records the identity it used when no noise was given
        stored = np.eye(n_chan) if noise is None else _stored_noise(noise)
        descriptors = {"noise": stored, "cv_descriptor": cv_name}
    else:
        sums, counts = groups.fold_sums(x, fold_index, n_folds)
        if method == "poisson_cv":
            square = cv.poisson_cv_from_fold_sums(sums, counts, prior_lambda, prior_weight)
        else:
            precisions = _as_precision_list(noise, n_chan, n_folds, x.device, cv_name)
            means = sums / counts.unsqueeze(-1)
            square = cv.crossnobis_fold_pairs(means, precisions, remove_mean=remove_mean)
            descriptors = {"noise": _stored_noise(noise), "cv_descriptor": cv_name}
    return groups.build_rdms(upper_tri(square), _MEASURE[method], descriptors)


def _fold_major_rows(x: torch.Tensor, inverse: np.ndarray, fold_index: np.ndarray, n: int,
                     n_folds: int) -> torch.Tensor:
    """(F, n, D) rows of x, fold f and (sorted) condition i at [f, i], when every condition has
    exactly one observation per fold: a view if x is already stored fold by fold, else one
    gather."""
    position = fold_index * n + inverse
    if np.array_equal(position, np.arange(len(position))):
        return x.reshape(n_folds, n, x.shape[1])
    order = torch.as_tensor(np.argsort(position), device=x.device)
    return x[order].view(n_folds, n, x.shape[1])


def _folds(ds, descriptor, cv_descriptor, groups):
    """Fold labels (sorted unique, as rsatoolbox's np.unique), fold index per observation."""
    if cv_descriptor is None:
        # (rsatoolbox adds these as obs_descriptor "cv_desc"; it varies within every
        # condition, so it never reaches the RDM's pattern_descriptors)
        labels = _default_cv_labels(np.asarray(ds.obs_descriptors[descriptor]), groups)
        name = "cv_desc"
    else:
        check_descriptor("cv_descriptor", cv_descriptor, ds.obs_descriptors.keys())
        labels = np.asarray(ds.obs_descriptors[cv_descriptor])
        name = cv_descriptor
    folds, fold_index = np.unique(labels, return_inverse=True)  # labels are 1-d
    return folds, fold_index, name


def _default_cv_labels(desc: np.ndarray, groups: _Groups) -> np.ndarray:
    """rsatoolbox's default folds: the k-th occurrence of each condition is in fold k."""
    counts = np.bincount(groups.inverse)  # every condition occurs: n bins
    if counts.min() != counts.max():
        raise InvalidArgumentError(
            "cv_descriptor=None builds folds from repetition order, which needs the same number "
            f"of observations per condition; got counts from {counts.min()} to {counts.max()}. "
            "Pass cv_descriptor (e.g. the run)"
        )
    order = np.argsort(groups.inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = np.arange(len(desc)) - starts[groups.inverse[order]]
    labels = np.zeros_like(desc)  # same dtype as rsatoolbox's (it fills zeros_like(desc))
    labels[order] = ranks
    return labels


# --------------------------------------------------------------------------- grouping


class _Groups:
    """Conditions of a Dataset: rows sorted as rsatoolbox's ``sort_by(descriptor='alpha')``."""

    def __init__(self, ds, descriptor: str | None):
        self.ds = ds
        self.descriptor = descriptor
        n_obs = np.asarray(ds.measurements).shape[0]
        if descriptor is None:
            self.values = None
            self.n = n_obs
            self.averaged = False
            return
        raw = np.asarray(ds.obs_descriptors[descriptor])
        if raw.ndim != 1 or raw.shape[0] != n_obs:
            raise InvalidArgumentError(
                f"descriptor={descriptor!r} must hold one value per observation; got shape "
                f"{raw.shape} for {n_obs} observations"
            )
        # np.unique's sorted order is the order rsatoolbox reaches after sort_by('alpha')
        self.values, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        self.first = first
        self.inverse = inverse.reshape(-1)
        self.n = len(self.values)
        self.averaged = self.n != n_obs
        # rsatoolbox builds descriptors in first-appearance order, then sorts stably
        self.appearance = np.argsort(first, kind="stable")

    def means(self, x: torch.Tensor) -> torch.Tensor:
        if not self.averaged:
            if self.descriptor is None:
                return x
            order = torch.as_tensor(np.argsort(self.inverse), device=x.device)
            return x[order]
        index = torch.as_tensor(self.inverse, device=x.device)
        sums = x.new_zeros(self.n, x.shape[1]).index_add_(0, index, x)
        return sums / torch.bincount(index).unsqueeze(1)  # every condition occurs: n bins

    def fold_sums(self, x, fold_index, n_folds):
        index = torch.as_tensor(self.inverse * n_folds + fold_index, device=x.device)
        sums = x.new_zeros(self.n * n_folds, x.shape[1]).index_add_(0, index, x)
        counts = torch.bincount(index)  # every cell was checked to be non-empty
        return sums.view(self.n, n_folds, -1), counts.view(self.n, n_folds)

    def labels(self, rows) -> list:
        if self.values is None:
            return list(rows)
        return [_py(self.values[r]) for r in rows]

    def build_rdms(self, dissimilarities: torch.Tensor, measure: str, descriptors: dict):
        """An RDMs object with descriptors exactly as rsatoolbox's ``_build_rdms`` + sort_by."""
        from rsatoolbox.rdm import RDMs

        ds = self.ds
        rdms = RDMs(
            dissimilarities=dissimilarities.detach().cpu().numpy()[None],
            dissimilarity_measure=measure,
            rdm_descriptors=deepcopy(ds.descriptors),
        )
        obs = dict(ds.obs_descriptors)
        if self.averaged:
            # keep each obs_descriptor that is constant within every condition
            for name, values in obs.items():
                kept = _constant_within(np.asarray(values), self.inverse, self.first)
                if kept is not None:
                    rdms.pattern_descriptors[name] = kept
        else:
            rdms.pattern_descriptors = deepcopy(obs)
        if self.descriptor is not None:
            # rsatoolbox reorders the (first-appearance) rows: descriptors become lists
            if self.averaged:
                for name, values in rdms.pattern_descriptors.items():
                    rdms.pattern_descriptors[name] = list(values)
            else:
                # one observation per condition: the values are distinct, no ties to order
                order = np.argsort(np.asarray(obs[self.descriptor]))
                for name, values in rdms.pattern_descriptors.items():
                    rdms.pattern_descriptors[name] = [values[i] for i in order]
            rdms.pattern_descriptors["index"] = list(range(self.n))
        rdms.descriptors.update(descriptors)
        return rdms


def _constant_within(values: np.ndarray, inverse: np.ndarray, first: np.ndarray):
    """Per-condition value (sorted condition order) if constant within each condition, else None.

    Mirrors rsatoolbox: a value is kept if ``len(set(group)) == 1`` (so two NaNs differ). The
    comparison is Python's ``==`` per observation, which works for any object a descriptor holds.
    """
    if values.ndim != 1:
        return None
    ref = values[first][inverse]
    others = np.arange(len(values)) != first[inverse]  # an observation is not compared to itself
    if any(other and not value == r for value, r, other in zip(values, ref, others)):
        return None
    return values[first]


# --------------------------------------------------------------------------- checks


def _check_n_conditions(n: int, descriptor: str | None) -> None:
    if n < 2:
        how = "observations" if descriptor is None else f"values of descriptor={descriptor!r}"
        raise InvalidArgumentError(
            f"data needs at least 2 conditions to form an RDM; got {n} {how}")


def _check_not_constant(means: torch.Tensor, groups: _Groups) -> None:
    """Refuse patterns constant across channels, up to rounding relative to their magnitude
    (an exact ``==`` test misses 0.1 repeated, whose mean is not exact)."""
    spread = (means - means.mean(dim=1, keepdim=True)).abs().amax(dim=1)
    size = means.abs().amax(dim=1)
    flat = spread <= _CONSTANT_EPS * torch.finfo(means.dtype).eps * size
    if bool(flat.any()):
        rows = torch.nonzero(flat).flatten().tolist()
        raise DegenerateDataError(
            "data: correlation distance is undefined for patterns that are constant across "
            f"channels (up to rounding); conditions {groups.labels(rows)[:10]} "
            f"({len(rows)} in all); drop them or use method='euclidean'"
        )


def _py(value: Any) -> Any:
    """A NumPy scalar as the plain Python value (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_array_like(obj: Any) -> bool:
    return isinstance(obj, (np.ndarray, torch.Tensor))


def _as_precision(noise: Any, n_chan: int, *, dtype, device) -> torch.Tensor:
    """A (D, D) or (D,) precision as a tensor, or a clear error naming ``noise``."""
    if not _is_array_like(noise):
        try:
            noise = np.asarray(noise, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidTypeError(
                f"noise must be a ({n_chan}, {n_chan}) precision matrix (array or tensor); "
                f"got {type(noise).__name__}"
            ) from None
    tensor = torch.as_tensor(noise).to(dtype=dtype, device=device)
    if tuple(tensor.shape) not in ((n_chan, n_chan), (n_chan,)):
        raise InvalidArgumentError(
            f"noise must have shape (D, D) = ({n_chan}, {n_chan}) for D = {n_chan} channels "
            f"(or its ({n_chan},) diagonal); got shape {tuple(tensor.shape)}"
        )
    check_finite("noise", tensor if tensor.ndim == 2 else tensor.reshape(1, -1))
    check_precision("noise", tensor, n_chan)
    return tensor


def _diagonal_if_diagonal(precision: torch.Tensor) -> torch.Tensor:
    """The (D,) diagonal of a diagonal (D, D) precision (identity, rsatoolbox's 'diag' shrinkage):
    an O(n·D) scaling instead of an O(n·D²) matrix product; other precisions unchanged."""
    if precision.ndim == 2:
        diag = torch.diagonal(precision)
        if torch.count_nonzero(precision) == torch.count_nonzero(diag):
            return diag.clone()
    return precision


def _stored_noise(noise: Any) -> Any:
    """The noise as rsatoolbox stores it in ``RDMs.descriptors`` (NumPy, not torch)."""
    if isinstance(noise, torch.Tensor):
        return noise.detach().cpu().numpy()
    if isinstance(noise, (list, tuple)):
        return type(noise)(_stored_noise(item) for item in noise)
    return noise


def _as_precision_list(noise, n_chan, n_folds, device, cv_name) -> torch.Tensor:
    items = list(noise)
    if len(items) != n_folds:
        raise InvalidArgumentError(
            f"noise is a list of {len(items)} precisions but cv_descriptor={cv_name!r} has "
            f"{n_folds} folds; pass one (D, D) precision per fold, or a single one"
        )
    mats = []
    for item in items:
        mat = _as_precision(item, n_chan, dtype=torch.float64, device=device)
        mats.append(torch.diag(mat) if mat.ndim == 1 else mat)
    return torch.stack(mats)
