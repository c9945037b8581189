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
from brainrdl.rsa.crossnobis import (
    cross_fold_rdm,
    crossnobis_fold_major,
    crossnobis_from_fold_sums,
    leave_one_out_means,
)
from brainrdl.rsa.distances import check_precision, pairwise_rdm, upper_tri
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
    p = np.eye(d) if precision is None else np.asarray(precision)
    p = np.diag(p) if p.ndim == 1 else p
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
    # the same in every condition, not constant across channels (remove_mean keeps it)
    shared = offset * np.where(np.arange(d) % 3 == 0, 1.0, -1.0)
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
    prec = np.array([0.5, 2.0, 1.0, 3.0, 1.5, 1.0])
    for grad in (False, True):
        t = torch.tensor(sums, dtype=torch.float32, requires_grad=grad)
        got = crossnobis_from_fold_sums(t, torch.tensor(counts, dtype=counts_dtype))
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.detach().numpy(), _crossnobis_by_hand(sums, counts),
                                   rtol=1e-4, atol=1e-5)
        # a float64 precision is used at the patterns' precision, float32
        got = crossnobis_from_fold_sums(t, torch.tensor(counts, dtype=counts_dtype),
                                        torch.tensor(prec))
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.detach().numpy(), _crossnobis_by_hand(sums, counts, prec),
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
    for grad in (False, True):  # the in-place and the autograd path
        got = crossnobis_from_fold_sums(torch.tensor(shifted, requires_grad=grad), c)
        np.testing.assert_allclose(got.detach().numpy(), ref, rtol=0,
                                   atol=1e-6 * np.abs(ref).max())


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


# --------------------------------------------------------------------------- distances (2)


def _double_loop(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    n, d = x.shape
    return np.array([[(x[i] - x[j]) @ p @ (x[i] - x[j]) / d for j in range(n)] for i in range(n)])


def test_pairwise_mahalanobis_uses_its_noise_and_vector_is_the_upper_triangle():
    rng = np.random.default_rng(30)
    x = rng.normal(size=(5, 3))
    a = rng.normal(size=(3, 3))
    prec = a @ a.T + np.eye(3)
    square = pairwise_rdm(torch.tensor(x), "mahalanobis", noise=torch.tensor(prec))
    np.testing.assert_allclose(square.numpy(), _double_loop(x, prec), rtol=1e-10, atol=1e-12)
    vec = pairwise_rdm(torch.tensor(x), "mahalanobis", noise=torch.tensor(prec), vector=True)
    assert vec.shape == (10,)
    assert torch.equal(vec, upper_tri(square))


def test_mahalanobis_is_invariant_to_a_large_shared_pattern():
    """Adding a pattern of size 1e8 (either sign per channel) to every condition leaves the RDM
    unchanged to rounding of the RDM's own scale (the centring removes it before the Gram)."""
    rng = np.random.default_rng(31)
    x = rng.normal(size=(6, 4))
    prec = torch.tensor(np.diag([1.0, 2.0, 0.5, 1.5]) + 0.1)
    shared = 1e8 * rng.choice([-1.0, 1.0], size=4)
    ref = pairwise_rdm(torch.tensor(x), "mahalanobis", noise=prec).numpy()
    got = pairwise_rdm(torch.tensor(x + shared), "mahalanobis", noise=prec).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * ref.max())


def test_pairwise_rdm_names_noise_when_it_is_not_positive_definite():
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^noise is not positive definite"):
        pairwise_rdm(x, "mahalanobis", noise=-torch.eye(3, dtype=torch.float64))


def test_check_precision_refuses_a_zero_diagonal_entry_and_reports_the_eigenvalue():
    """Positive definite means > 0: a zero on the diagonal is refused (naming its channel); a
    matrix with eigenvalue -1 says so (of its symmetric part, not of a scaled copy)."""
    with pytest.raises(ValueError, match=r"channels \[1\] are ≤ 0"):
        check_precision("noise", torch.tensor([1.0, 0.0, 2.0]), 3)
    with pytest.raises(ValueError, match=r"smallest eigenvalue -1\b"):
        check_precision("noise", torch.tensor([[-1.0, 0.5], [-0.5, 2.0]]), 2)


@pytest.mark.parametrize("method", ["correlation", "cosine"])
def test_an_all_zero_pattern_is_named_with_the_kind_of_the_measure(method):
    """correlation calls an all-zero pattern constant, cosine calls it all zero; in a batch, the
    condition's row is named, whichever batch element holds it."""
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    x[1, 2] = 0.0
    kind = "constant across channels" if method == "correlation" else "all zero"
    with pytest.raises(DegenerateDataError,
                       match=rf"^data: {method} distance is undefined for patterns that are "
                             rf"{kind}: conditions \[2\] \(1 in all"):
        pairwise_rdm(x, method)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_correlation_constant_threshold_is_100_eps_rms_whatever_the_shape(batch):
    """A pattern is 'constant' when its spread (root mean square about its mean) is at most
    100 float eps of its magnitude: 50 eps is refused, 200 eps is not, with D = 100 channels and
    3 conditions (the threshold counts channels, not conditions)."""
    eps = torch.finfo(torch.float64).eps
    signs = torch.tensor([1.0, -1.0] * 50, dtype=torch.float64)  # mean 0, RMS 1
    base = torch.randn(*batch, 3, 100, generator=torch.Generator().manual_seed(32),
                       dtype=torch.float64)
    for r, refused in ((50 * eps, True), (200 * eps, False)):
        x = base.clone()
        x[..., 1, :] = 1.0 + r * signs
        if refused:
            with pytest.raises(DegenerateDataError, match=r"conditions \[1\]"):
                pairwise_rdm(x, "correlation")
        else:
            assert torch.isfinite(pairwise_rdm(x, "correlation")).all()


# --------------------------------------------------------------------------- crossnobis (2)


def test_cross_fold_rdm_refuses_mismatched_or_flat_inputs_by_name():
    with pytest.raises(ValueError, match=r"left and right must both have shape.*\(3, 2, 4\) and "
                                         r"\(3, 2, 5\)"):
        cross_fold_rdm(torch.zeros(3, 2, 4), torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match=r"left and right"):
        cross_fold_rdm(torch.zeros(3, 4), torch.zeros(3, 4))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_cross_fold_rdm_batched_equals_each_element(requires_grad):
    """A batch of fold estimates gives each element's RDM (the in-place and autograd paths)."""
    rng = np.random.default_rng(33)
    left, right = rng.normal(size=(2, 3, 5, 2, 4)), rng.normal(size=(2, 3, 5, 2, 4))
    got = cross_fold_rdm(torch.tensor(left, requires_grad=requires_grad), torch.tensor(right))
    assert got.shape == (2, 3, 5, 5)
    for idx in np.ndindex(2, 3):
        a, b = left[idx], right[idx]  # (n, F, D)
        n_folds, d = a.shape[1:]
        k = sum(a[:, f] @ b[:, f].T for f in range(n_folds))
        ref = (np.diag(k)[:, None] + np.diag(k)[None, :] - k - k.T) / (n_folds * d)
        np.testing.assert_allclose(got[idx].detach().numpy(), ref, rtol=1e-10, atol=1e-12)


def test_crossnobis_fold_major_needs_two_folds_of_any_number_of_conditions():
    with pytest.raises(ValueError, match=r"n_folds >= 2"):
        crossnobis_fold_major(torch.zeros(1, 4, 3, dtype=torch.float64))
    assert crossnobis_fold_major(torch.randn(3, 1, 2, dtype=torch.float64)).shape == (1, 1)


@pytest.mark.parametrize("kind", ["none", "diagonal", "full"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_crossnobis_fold_major_equals_the_fold_loop(kind, requires_grad):
    """Fold-major means (F, n, D), one observation per cell: the fold-by-fold definition for
    every kind of precision, on the in-place and the autograd path (4 folds: several within
    Grams to add)."""
    rng = np.random.default_rng(34)
    means = rng.normal(size=(4, 5, 3)) + rng.normal(size=(1, 5, 3))
    a = rng.normal(size=(3, 3))
    precision = {"none": None, "diagonal": np.array([0.5, 2.0, 1.0]),
                 "full": a @ a.T + np.eye(3)}[kind]
    t = torch.tensor(means, requires_grad=requires_grad)
    got = crossnobis_fold_major(t, None if precision is None else torch.tensor(precision))
    ref = _crossnobis_by_hand(means.transpose(1, 0, 2), np.ones((5, 4)), precision)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-10, atol=1e-12)


def test_crossnobis_fold_major_in_float32_and_shared_pattern_and_precision_gradient():
    rng = np.random.default_rng(35)
    means = rng.normal(size=(3, 4, 5))
    prec = np.array([0.5, 2.0, 1.0, 3.0, 1.5])
    ref = _crossnobis_by_hand(means.transpose(1, 0, 2), np.ones((4, 3)), prec)
    got32 = crossnobis_fold_major(torch.tensor(means, dtype=torch.float32),
                                  torch.tensor(prec, dtype=torch.float32))
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, rtol=1e-4, atol=1e-5)
    shared = 1e7 * rng.choice([-1.0, 1.0], size=5)  # the same in every condition and fold
    got = crossnobis_fold_major(torch.tensor(means + shared), torch.tensor(prec)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    weight = torch.tensor(rng.normal(size=(4, 4)))
    p = torch.tensor(prec, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q: (crossnobis_fold_major(torch.tensor(means), q) * weight).sum(), (p,),
        eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_balanced_crossnobis_with_remove_mean_and_precision_equals_the_fold_loop(requires_grad):
    """remove_mean subtracts each pattern's mean over channels from train and test (rsatoolbox);
    with a diagonal precision and a large shared pattern, on both paths."""
    counts = np.array([[2, 2, 2]] * 4)
    sums = _fold_sums(np.random.default_rng(36), counts, 5, offset=1e6)
    plain = _fold_sums(np.random.default_rng(36), counts, 5)  # the same without the pattern
    prec = np.array([0.5, 2.0, 1.0, 3.0, 1.5])
    t = torch.tensor(sums, requires_grad=requires_grad)
    got = crossnobis_from_fold_sums(t, torch.tensor(counts), torch.tensor(prec), remove_mean=True)
    centred = plain - plain.mean(axis=-1, keepdims=True)  # linear: commutes with the fold means
    ref = _crossnobis_by_hand(centred, counts, prec)  # (the shared pattern does not matter)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_leave_one_out_means_keep_the_dtype_of_the_sums():
    sums = torch.tensor([[[1.0], [3.0], [8.0]]], dtype=torch.float32)
    for counts in (torch.tensor([[1.0, 2.0, 1.0]], dtype=torch.float64),
                   torch.tensor([[1, 2, 1]])):
        train, test = leave_one_out_means(sums, counts)
        assert train.dtype == test.dtype == torch.float32
        assert test[0, :, 0].tolist() == [1.0, 1.5, 8.0]
        # the other folds' observations: (3 + 8) / 3, (1 + 8) / 2, (1 + 3) / 3
        np.testing.assert_allclose(train[0, :, 0].numpy(), [11 / 3, 4.5, 4 / 3], rtol=1e-6)


# --------------------------------------------------------------------------- calc_rdm (2)


def test_cross_validated_rdms_name_the_descriptor_when_one_condition_remains():
    ds = Dataset(np.random.default_rng(37).normal(size=(4, 3)),
                 obs_descriptors={"stim": np.array(["a"] * 4), "run": np.array([0, 0, 1, 1])})
    with pytest.raises(ValueError, match=r"got 1 values of descriptor='stim'"):
        calc_rdm(ds, "crossnobis", descriptor="stim", cv_descriptor="run")


def test_a_condition_missing_from_the_last_fold_is_named():
    """The last condition has no observation in the last fold (the last cell of the table)."""
    stim = np.array(["a", "b", "c", "a", "b"])
    run = np.array([0, 0, 0, 1, 1])
    ds = Dataset(np.random.default_rng(38).normal(size=(5, 3)),
                 obs_descriptors={"stim": stim, "run": run})
    with pytest.raises(ValueError, match=r"condition 'c' has no observation in fold 1"):
        calc_rdm(ds, "crossnobis", descriptor="stim", cv_descriptor="run")


@pytest.mark.parametrize("layout", ["one per cell", "two per cell"])
def test_crossnobis_noise_as_a_diagonal_or_float32_matrix_equals_float64_matrix(layout):
    """One precision given as its (D,) diagonal or as a float32 matrix: the RDM of the float64
    (D, D) matrix, which rsatoolbox computes (one or two observations per condition and fold)."""
    reps = 1 if layout == "one per cell" else 2
    rng = np.random.default_rng(39)
    stim = np.tile(np.repeat(["a", "b", "c", "d"], reps), 3)
    run = np.repeat([0, 1, 2], 4 * reps)
    ds = Dataset(rng.normal(size=(len(stim), 3)), obs_descriptors={"stim": stim, "run": run})
    a = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.25], [0.0, 0.25, 1.5]])  # float32-exact
    kwargs = dict(descriptor="stim", cv_descriptor="run")
    for noise, ref_noise in ((np.array([0.5, 2.0, 1.0]), np.diag([0.5, 2.0, 1.0])),
                             (a.astype(np.float32), a)):
        ref = rsa_calc_rdm(ds, method="crossnobis", noise=ref_noise, **kwargs).get_vectors()
        got = calc_rdm(ds, "crossnobis", noise=noise, **kwargs).get_vectors()
        np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_per_fold_precisions_with_two_observations_per_cell_equal_rsatoolbox():
    rng = np.random.default_rng(40)
    stim = np.tile(np.repeat(["a", "b", "c"], 2), 3)
    run = np.repeat([0, 1, 2], 6)
    ds = Dataset(rng.normal(size=(18, 3)), obs_descriptors={"stim": stim, "run": run})
    noises = [np.diag([1.0, 2.0, 0.5]), np.eye(3), np.diag([0.25, 1.0, 4.0])]
    kwargs = dict(descriptor="stim", cv_descriptor="run", noise=noises)
    np.testing.assert_allclose(calc_rdm(ds, "crossnobis", **kwargs).get_vectors(),
                               rsa_calc_rdm(ds, method="crossnobis", **kwargs).get_vectors(),
                               rtol=1e-10)
    with pytest.raises(ValueError, match=r"cv_descriptor='run' has 3 folds"):
        calc_rdm(ds, "crossnobis", descriptor="stim", cv_descriptor="run", noise=noises[:2])


def test_noise_with_nan_is_refused_naming_its_row_and_column():
    ds = _three_fold_dataset(41)
    kwargs = dict(descriptor="stim", cv_descriptor="run")
    bad = np.eye(3)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"^noise contains 1 NaN.*\[1\].*\[2\]"):
        calc_rdm(ds, "crossnobis", noise=bad, **kwargs)
    with pytest.raises(ValueError, match=r"^noise contains 1 NaN.*\[0\].*\[2\]"):
        calc_rdm(ds, "crossnobis", noise=np.array([1.0, 1.0, np.nan]), **kwargs)


def test_a_constant_pattern_without_descriptor_is_named_by_its_row():
    x = np.random.default_rng(42).normal(size=(4, 3))
    x[2] = 5.0
    with pytest.raises(DegenerateDataError, match=r"conditions \[2\] \(1 in all\)"):
        calc_rdm(Dataset(x), "correlation")


# --------------------------------------------------------------------------- overflow, arguments


@pytest.mark.parametrize("method", ["euclidean", "mahalanobis", "poisson"])
def test_overflowing_squared_distances_are_refused_without_warnings(method):
    """float32 patterns near 1e20 (euclidean, mahalanobis) or 1e37 (poisson rates times their
    logs) have distances beyond float32's range: a DegenerateDataError says so, and no NumPy
    warning leaks out of the Gram products on the way."""
    x = torch.tensor([[1e20, -1e20, 3e19], [-1e20, 1e20, 0.0], [0.0, 2e19, 1e20]])
    if method == "poisson":
        x = torch.tensor([[3e37, 1.0, 2e37], [1.0, 3e37, 1.0], [2e37, 1.0, 3e37]])
    noise = torch.ones(3) if method == "mahalanobis" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DegenerateDataError, match=r"^data: the squared distances overflow "
                                                      r"torch.float32"):
            pairwise_rdm(x, method, noise=noise)


def test_pairwise_poisson_uses_both_prior_arguments():
    x = np.random.default_rng(43).uniform(0.5, 3.0, size=(4, 3))
    got = pairwise_rdm(torch.tensor(x), "poisson", prior_lambda=2.0, prior_weight=0.5).numpy()
    r = (x + 2.0 * 0.5) / 1.5
    ref = np.array([[((r[i] - r[j]) * (np.log(r[i]) - np.log(r[j]))).sum() / 3
                     for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_upper_tri_refuses_a_rectangular_matrix():
    with pytest.raises(ValueError, match=r"upper_tri needs square matrices.*\(3, 4\)"):
        upper_tri(torch.zeros(3, 4))


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"device": "nonsense"}, r"^device='nonsense'"),
    ({"prior_lambda": "one"}, r"^prior_lambda must be a real number"),
    ({"prior_weight": "one"}, r"^prior_weight must be a real number"),
    ({"prior_weight": -0.5}, r"^prior_weight=-0.5 is out of range; expected prior_weight ≥ 0"),
    ({"vector": 1}, r"^vector must be True or False"),
    ({"remove_mean": "yes"}, r"^remove_mean must be True or False"),
    ({"method": "crossnobis"}, r"^method='crossnobis' is not supported"),
])
def test_calc_rdm_names_the_argument_it_refuses(kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        calc_rdm(torch.randn(4, 3, dtype=torch.float64), **kwargs)


def test_an_object_with_measurements_only_is_not_a_dataset():
    class Measurements:
        measurements = np.zeros((3, 2))

    with pytest.raises(TypeError, match=r"^data must be an rsatoolbox Dataset.*got Measurements"):
        calc_rdm(Measurements())


@pytest.mark.parametrize(("descriptor", "how"), [(None, "observations"),
                                                 ("stim", "values of descriptor='stim'")])
def test_fewer_than_two_conditions_name_what_was_counted(descriptor, how):
    ds = Dataset(np.ones((1, 3)) if descriptor is None else np.arange(6.0).reshape(2, 3),
                 obs_descriptors={"stim": np.array(["a"] * (1 if descriptor is None else 2))})
    with pytest.raises(ValueError, match=rf"at least 2 conditions to form an RDM; got 1 {how}$"):
        calc_rdm(ds, "euclidean", descriptor=descriptor)


def test_nan_measurements_are_named_by_observation():
    x = np.random.default_rng(44).normal(size=(4, 3))
    x[2, 1] = np.nan
    with pytest.raises(DegenerateDataError, match=r"^data\.measurements contains 1 NaN or infinite "
                                                  r"values, in observations \(rows\) \[2\]"):
        calc_rdm(Dataset(x), "euclidean")


@pytest.mark.parametrize("prior_weight", [0.1, 0.5])
def test_poisson_of_a_dataset_refuses_a_zero_rate_at_the_prior_boundary(prior_weight):
    """A condition mean of exactly −prior_lambda·prior_weight has rate 0 (log 0): refused."""
    x = np.array([[1.0, 2.0], [-0.5 * prior_weight, 1.0], [2.0, 3.0]])
    with pytest.raises(DegenerateDataError, match=r"rates > 0"):
        calc_rdm(Dataset(x), "poisson", prior_lambda=0.5, prior_weight=prior_weight)
    ok = calc_rdm(Dataset(x + 1e-9), "poisson", prior_lambda=0.5, prior_weight=prior_weight)
    assert np.isfinite(ok.get_vectors()).all()


def _small_dataset() -> Dataset:
    return Dataset(np.random.default_rng(45).normal(size=(4, 3)),
                   obs_descriptors={"stim": np.array(["a", "b", "c", "d"])})


@pytest.mark.parametrize("make", [lambda: 5, lambda: [], lambda: [1, 2], lambda: "abc",
                                  lambda: {"s": _small_dataset()}.values()])
def test_data_that_is_not_a_dataset_list_or_tensor_is_refused_by_name(make):
    """Only a Dataset, a non-empty list (sequence) of Datasets or a tensor: not a number, an
    empty list, a list of other things, a string, or an unordered collection of Datasets (a
    dict's values)."""
    with pytest.raises(TypeError, match=r"^data must be an rsatoolbox Dataset, a non-empty list"):
        calc_rdm(make())


def test_a_list_of_one_dataset_is_that_dataset():
    ds = _small_dataset()
    np.testing.assert_array_equal(calc_rdm([ds], "correlation").get_vectors(),
                                  calc_rdm(ds, "correlation").get_vectors())


def test_the_constant_limit_is_inclusive():
    """A spread of exactly 100 eps RMS (here exact in float64: ±100 eps about 1 − 100 eps) is at
    the limit and refused; the limit is ≤, not <."""
    eps = torch.finfo(torch.float64).eps
    x = torch.tensor([[1.0, 1.0 - 200 * eps], [1.0, 2.0], [3.0, 1.0]], dtype=torch.float64)
    with pytest.raises(DegenerateDataError, match=r"conditions \[0\]"):
        pairwise_rdm(x, "correlation")


def test_poisson_cv_of_a_dataset_uses_both_prior_arguments():
    """calc_rdm's poisson_cv = the documented formula on the per-fold sums, with the priors given
    (not their defaults)."""
    ds = _three_fold_dataset(46)
    ds.measurements = np.abs(ds.measurements) + 0.5
    got = calc_rdm(ds, "poisson_cv", descriptor="stim", cv_descriptor="run", prior_lambda=2.0,
                   prior_weight=0.5).get_vectors()[0]
    x = ds.measurements.reshape(3, 4, 3).transpose(1, 0, 2)  # (condition, fold, channel)
    d = np.zeros((4, 4))
    for f in range(3):
        train = (np.delete(x, f, axis=1).mean(1) + 1.0) / 1.5
        test = np.log((x[:, f] + 1.0) / 1.5)
        k = train @ test.T
        d += (np.diag(k)[:, None] + np.diag(k)[None, :] - k - k.T) / 3
    np.testing.assert_allclose(got, upper_tri(torch.tensor(d / 3)).numpy(), rtol=1e-10)
