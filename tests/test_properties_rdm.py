"""Properties of the RDM engine (distances, calc_rdm, crossnobis) that pin down its arithmetic.

Written to kill the mutants of the ``rdm`` group that survived the reference-equality tests
(docs/mutation-testing.md): each test states a property any correct implementation has (a closed
form, a reference such as rsatoolbox, an invariance or a boundary), not a snapshot of today's
output.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import calc_rdm as _rsa_calc_rdm

from brainrdl.errors import DegenerateDataError
from brainrdl.rsa.crossnobis import crossnobis_from_fold_sums
from brainrdl.rsa.distances import pairwise_rdm
from brainrdl.rsa.rdm import calc_rdm


def rsa_calc_rdm(*args, **kwargs):
    with warnings.catch_warnings():  # rsatoolbox casts NaN into int descriptors
        warnings.simplefilter("ignore", RuntimeWarning)
        return _rsa_calc_rdm(*args, **kwargs)


def _crossnobis_by_hand(sums: np.ndarray, counts: np.ndarray, precision=None) -> np.ndarray:
    """rsatoolbox's leave-one-fold-out crossnobis, fold by fold: the mean of the other folds'
    observations (train) against the held-out fold's mean (test), K = train P testᵀ,
    d_ij = mean_f (K_ii + K_jj − K_ij − K_ji) / D."""
    n, n_folds, d = sums.shape
    p = np.eye(d) if precision is None else np.diag(precision)
    out = np.zeros((n, n))
    for f in range(n_folds):
        others = [g for g in range(n_folds) if g != f]
        train = sums[:, others].sum(1) / counts[:, others].sum(1)[:, None]
        test = sums[:, f] / counts[:, f][:, None]
        k = train @ p @ test.T
        out += (np.diag(k)[:, None] + np.diag(k)[None, :] - k - k.T) / d
    return out / n_folds


def _fold_sums(rng, counts: np.ndarray, d: int, offset: float = 0.0) -> np.ndarray:
    """Per-fold sums of ``counts`` observations (condition signal + noise + a shared pattern)."""
    n, n_folds = counts.shape
    signal = rng.normal(size=(n, 1, d))
    shared = offset * rng.choice([-1.0, 1.0], size=d)  # the same pattern in every condition
    means = signal + shared + 0.5 * rng.normal(size=(n, n_folds, d))
    return means * counts[..., None]


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(1, 4),
                                 torch.tensor([[1.0, float("nan")], [2.0, 3.0]])])
def test_pairwise_rdm_names_its_argument_data(bad):
    """Every refusal of pairwise_rdm's patterns names the argument, ``data``, first."""
    with pytest.raises(ValueError, match=r"^data\b"):
        pairwise_rdm(bad, "euclidean")


# --------------------------------------------------------------------------- calc_rdm


def test_correlation_of_a_tiny_but_varied_pattern_is_defined():
    """Correlation is invariant to a positive scale of one pattern: a condition scaled by 1e-15
    is not 'constant' (its spread is judged against its own magnitude, not the others')."""
    rng = np.random.default_rng(20)
    x = rng.normal(size=(4, 6))
    tiny = x.copy()
    tiny[1] *= 1e-15
    ours = calc_rdm(Dataset(tiny), "correlation").get_vectors()
    np.testing.assert_allclose(ours, calc_rdm(Dataset(x), "correlation").get_vectors(),
                               rtol=1e-10)
    np.testing.assert_allclose(ours, rsa_calc_rdm(Dataset(x), method="correlation")
                               .get_vectors(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [None, object])
def test_an_all_zero_pattern_is_refused_by_its_condition_label(dtype):
    """Spread exactly 0 at magnitude exactly 0 (the boundary of the constant test) is constant;
    the message names the condition by its descriptor value, also for Python-object labels."""
    x = np.random.default_rng(21).normal(size=(3, 4))
    x[1] = 0.0
    stim = np.array(["a", "bee", "c"], dtype=dtype)
    with pytest.raises(DegenerateDataError, match=r"conditions \['bee'\] \(1 in all\)"):
        calc_rdm(Dataset(x, obs_descriptors={"stim": stim}), "correlation", descriptor="stim")


def _three_fold_dataset(seed: int, n_chan: int = 3) -> Dataset:
    rng = np.random.default_rng(seed)
    stim = np.tile(["a", "b", "c", "d"], 3)
    run = np.repeat([0, 1, 2], 4)
    return Dataset(rng.normal(size=(12, n_chan)) + rng.normal(size=(4, n_chan))[np.tile(
        np.arange(4), 3)], obs_descriptors={"stim": stim, "run": run})


def test_per_fold_precisions_as_diagonals_or_float32_equal_float64_matrices():
    """A list of per-fold precisions may hold (D,) diagonals or float32 arrays: the RDM is the
    one of the float64 (D, D) matrices (which rsatoolbox computes)."""
    ds = _three_fold_dataset(22)
    diags = [np.array([1.0, 2.0, 0.5]), np.array([0.25, 1.0, 4.0]), np.array([2.0, 2.0, 1.0])]
    as_matrices = [np.diag(p) for p in diags]
    ref = rsa_calc_rdm(ds, method="crossnobis", descriptor="stim", cv_descriptor="run",
                       noise=as_matrices).get_vectors()
    for noise in (diags, [m.astype(np.float32) for m in as_matrices]):
        got = calc_rdm(ds, "crossnobis", descriptor="stim", cv_descriptor="run", noise=noise)
        np.testing.assert_allclose(got.get_vectors(), ref, rtol=1e-10)


# --------------------------------------------------------------------------- crossnobis


def test_crossnobis_with_unequal_counts_and_a_diagonal_precision_equals_rsatoolbox():
    """Folds that are not balanced take the general leave-one-out path; a diagonal precision
    multiplies the test means there (rsatoolbox with the same diagonal as a matrix)."""
    rng = np.random.default_rng(23)
    stim = np.array(["a", "a", "b", "c", "a", "a", "b", "c", "a", "b", "c", "c"])
    run = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    ds = Dataset(rng.normal(size=(12, 4)), obs_descriptors={"stim": stim, "run": run})
    noise = np.diag([0.5, 2.0, 1.0, 3.0])
    ours = calc_rdm(ds, "crossnobis", descriptor="stim", cv_descriptor="run", noise=noise)
    ref = rsa_calc_rdm(ds, method="crossnobis", descriptor="stim", cv_descriptor="run",
                       noise=noise)
    np.testing.assert_allclose(ours.get_vectors(), ref.get_vectors(), rtol=1e-10)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("precision", [None, np.array([0.5, 2.0, 1.0, 3.0, 1.5])])
def test_balanced_folds_with_different_counts_per_condition_equal_the_fold_loop(
        precision, requires_grad):
    """Balanced folds where conditions were seen 1, 2 or 3 times per fold (integer counts, as
    calc_rdm passes them), batched: each batch element equals the fold-by-fold definition."""
    rng = np.random.default_rng(24)
    counts = np.array([[2, 2, 2], [1, 1, 1], [3, 3, 3], [2, 2, 2], [1, 1, 1]])
    sums = np.stack([_fold_sums(rng, counts, 5), _fold_sums(rng, counts, 5)])
    t = torch.tensor(sums, requires_grad=requires_grad)
    prec = None if precision is None else torch.tensor(precision)
    got = crossnobis_from_fold_sums(t, torch.tensor(np.stack([counts, counts])), prec)
    assert got.shape == (2, 5, 5)
    for b in range(2):
        np.testing.assert_allclose(got[b].detach().numpy(),
                                   _crossnobis_by_hand(sums[b], counts, precision),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("counts_dtype", [torch.int64, torch.float64])
@pytest.mark.parametrize("same", [True, False])
def test_balanced_crossnobis_keeps_float32_whatever_the_counts_dtype(same, counts_dtype):
    """float32 sums give a float32 RDM (on the autograd path too), close to float64."""
    rng = np.random.default_rng(25)
    counts = np.array([[2, 2, 2]] * 4) if same else np.array([[2, 2, 2], [1, 1, 1]] * 2)
    sums = _fold_sums(rng, counts, 6)
    for grad in (False, True):
        t = torch.tensor(sums, dtype=torch.float32, requires_grad=grad)
        got = crossnobis_from_fold_sums(t, torch.tensor(counts, dtype=counts_dtype))
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.detach().numpy(), _crossnobis_by_hand(sums, counts),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("counts", [[[2, 2, 2]] * 4, [[2, 2, 2], [1, 1, 1]] * 2])
def test_balanced_crossnobis_is_invariant_to_a_large_shared_pattern(counts):
    """A distance does not depend on a pattern shared by every condition: adding one of size
    1e7 (per channel, either sign) leaves the RDM unchanged to rounding of the RDM's scale."""
    counts = np.array(counts)
    base = _fold_sums(np.random.default_rng(26), counts, 6)
    shifted = _fold_sums(np.random.default_rng(26), counts, 6, offset=1e7)
    c = torch.tensor(counts)
    ref = crossnobis_from_fold_sums(torch.tensor(base), c).numpy()
    got = crossnobis_from_fold_sums(torch.tensor(shifted), c).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_balanced_crossnobis_is_differentiable_in_its_diagonal_precision():
    """The gradient with respect to a diagonal precision equals finite differences."""
    rng = np.random.default_rng(27)
    counts = torch.tensor([[2, 2, 2]] * 4)
    sums = torch.tensor(_fold_sums(rng, counts.numpy(), 3))
    weight = torch.tensor(rng.normal(size=(4, 4)))
    p = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64, requires_grad=True)

    def f(prec):
        return (crossnobis_from_fold_sums(sums, counts, prec) * weight).sum()

    assert torch.autograd.gradcheck(f, (p,), eps=1e-6, atol=1e-6)
