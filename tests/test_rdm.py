"""brainrdl.calc_rdm on rsatoolbox Datasets: numbers and descriptors against rsatoolbox."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rsatoolbox
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rsatoolbox.data import Dataset

from brainrdl import calc_rdm
from brainrdl.errors import DegenerateDataError

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
RTOL = 1e-6


def rsa_calc(*args, **kwargs):
    with warnings.catch_warnings():  # rsatoolbox casts NaN into int descriptors
        warnings.simplefilter("ignore", RuntimeWarning)
        return rsatoolbox.rdm.calc_rdm(*args, **kwargs)


# --------------------------------------------------------------------------- helpers


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = np.max(np.abs(theirs))
    # relative to each entry, with a floor at 1e-9 of the RDM's scale (rsatoolbox's own
    # uncentred euclidean cancels to ~1e-16·scale near zero)
    err = np.abs(ours - theirs) / np.maximum(np.abs(theirs), max(1e-9 * scale, 1e-9))
    assert np.max(err) <= RTOL, f"max relative difference {np.max(err):.3g}"


def _same_value(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list) or isinstance(a, tuple):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same_value(x, y) for x, y in zip(a, b)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b))
    return type(a) is type(b) and a == b


def assert_same_rdms(ours, theirs) -> None:
    """Dissimilarities to RTOL; measure and every descriptor identical (keys, types, values)."""
    assert type(ours) is type(theirs)
    assert_close(ours.dissimilarities, theirs.dissimilarities)
    assert ours.dissimilarity_measure == theirs.dissimilarity_measure
    for attr in ("descriptors", "rdm_descriptors", "pattern_descriptors"):
        a, b = getattr(ours, attr), getattr(theirs, attr)
        assert list(a) == list(b), f"{attr} keys {list(a)} != {list(b)}"
        for key in a:
            assert _same_value(a[key], b[key]), f"{attr}[{key!r}]: {a[key]!r} != {b[key]!r}"


def make_dataset(rng, n_cond, reps, n_chan, *, str_labels=False, positive=False, shuffle=True,
                 runs=None):
    """Dataset with conditions repeated ``reps[i]`` times, extra descriptors of each kind."""
    conds = np.repeat(np.arange(n_cond), reps)
    if runs is None:
        runs = np.concatenate([np.arange(r) for r in reps])
    order = rng.permutation(len(conds)) if shuffle else np.arange(len(conds))
    conds, runs = conds[order], np.asarray(runs)[order]
    labels = np.array([f"stim{c:02d}" for c in conds]) if str_labels else conds * 3 + 1
    if positive:  # counts-like, for the poisson measures
        meas = rng.random((len(conds), n_chan)) + rng.random((n_cond, n_chan))[conds] * 4
    else:  # noise plus a condition signal
        meas = rng.normal(size=(len(conds), n_chan)) + rng.normal(size=(n_cond, n_chan))[conds]
    return Dataset(
        meas,
        descriptors={"roi": "V1", "subject": 3},
        obs_descriptors={
            "stimulus": labels,
            "run": runs,
            "category": [f"cat{c % 2}" for c in conds],  # constant within a condition
            "trial": np.arange(len(conds)),  # varies within a condition
        },
        channel_descriptors={"voxel": np.arange(n_chan)},
    )


def spd(rng, d, scale=1.0):
    a = rng.normal(size=(d + 3, d))
    return scale * np.linalg.inv(a.T @ a / (d + 3) + 0.5 * np.eye(d))


datasets = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n_cond": st.integers(2, 7),
    "n_chan": st.integers(2, 12),
    "max_rep": st.integers(1, 3),
    "str_labels": st.booleans(),
    "descriptor": st.sampled_from([None, "stimulus", "category", "trial"]),
})


# --------------------------------------------------------------------------- plain methods


@pytest.mark.parametrize("method", ["euclidean", "correlation", "mahalanobis", "poisson"])
@SETTINGS
@given(params=datasets, use_noise=st.booleans())
def test_matches_rsatoolbox(method, params, use_noise):
    rng = np.random.default_rng(params["seed"])
    reps = rng.integers(1, params["max_rep"] + 1, size=params["n_cond"])  # unequal repetitions
    ds = make_dataset(rng, params["n_cond"], reps, params["n_chan"],
                      str_labels=params["str_labels"], positive=method == "poisson")
    noise = spd(rng, params["n_chan"]) if method == "mahalanobis" and use_noise else None
    kwargs = {"descriptor": params["descriptor"], "noise": noise}
    assert_same_rdms(calc_rdm(ds, method, **kwargs), rsa_calc(ds, method, **kwargs))


@pytest.mark.parametrize("method", ["euclidean", "mahalanobis"])
def test_remove_mean_matches_rsatoolbox(method):
    rng = np.random.default_rng(1)
    ds = make_dataset(rng, 5, [2, 1, 3, 2, 2], 6)
    noise = spd(rng, 6) if method == "mahalanobis" else None
    kw = {"descriptor": "stimulus", "noise": noise, "remove_mean": True}
    assert_same_rdms(calc_rdm(ds, method, **kw), rsa_calc(ds, method, **kw))


@pytest.mark.parametrize("descriptor", [None, "stimulus"])
def test_list_of_datasets_matches_rsatoolbox(descriptor):
    rng = np.random.default_rng(2)
    first = make_dataset(rng, 4, [2, 2, 2, 2], 5)
    second = make_dataset(rng, 4, [2, 2, 2, 2], 5)
    second.descriptors["roi"] = "V2"
    if descriptor is not None:  # partial overlap of conditions: from_partials fills NaN
        second = second.subset_obs("stimulus", [1, 4, 7])
    else:
        second = second.subset_obs("trial", list(range(8)))
        first = first.subset_obs("trial", list(range(8)))
    ours = calc_rdm([first, second], "correlation", descriptor=descriptor)
    theirs = rsa_calc([first, second], "correlation", descriptor=descriptor)
    assert ours.n_rdm == 2
    np.testing.assert_array_equal(np.isnan(ours.dissimilarities),
                                  np.isnan(theirs.dissimilarities))
    ok = ~np.isnan(theirs.dissimilarities)
    assert_close(ours.dissimilarities[ok], theirs.dissimilarities[ok])
    assert ours.rdm_descriptors["roi"] == theirs.rdm_descriptors["roi"] == ["V1", "V2"]


def test_list_of_datasets_per_dataset_noise():
    rng = np.random.default_rng(3)
    sets = [make_dataset(rng, 4, [2, 2, 2, 2], 5) for _ in range(2)]
    noises = [spd(rng, 5), spd(rng, 5)]
    ours = calc_rdm(sets, "mahalanobis", descriptor="stimulus", noise=noises)
    theirs = rsa_calc(sets, "mahalanobis", descriptor="stimulus", noise=noises)
    assert_close(ours.dissimilarities, theirs.dissimilarities)
    # one (D, D) precision is shared by all Datasets (rsatoolbox would index it by Dataset)
    shared = calc_rdm(sets, "mahalanobis", descriptor="stimulus", noise=noises[0])
    single = calc_rdm(sets[1], "mahalanobis", descriptor="stimulus", noise=noises[0])
    assert_close(shared.dissimilarities[1], single.dissimilarities[0])


def test_accepts_rsatoolbox_precisions_and_tensors_unchanged():
    rng = np.random.default_rng(4)
    ds = make_dataset(rng, 4, [3, 3, 3, 3], 6)
    residuals = rng.normal(size=(40, 6))
    prec = rsatoolbox.data.prec_from_residuals(residuals)
    theirs = rsa_calc(ds, "mahalanobis", descriptor="stimulus", noise=prec)
    assert_same_rdms(calc_rdm(ds, "mahalanobis", descriptor="stimulus", noise=prec), theirs)
    as_tensor = calc_rdm(ds, "mahalanobis", descriptor="stimulus", noise=torch.from_numpy(prec))
    assert_close(as_tensor.dissimilarities, theirs.dissimilarities)
    assert isinstance(as_tensor.descriptors["noise"], np.ndarray)
    # a (D,) diagonal is the same as the diagonal matrix
    diag = rng.random(6) + 0.5
    assert_close(calc_rdm(ds, "mahalanobis", descriptor="stimulus", noise=diag).dissimilarities,
                 rsa_calc(ds, "mahalanobis", descriptor="stimulus",
                          noise=np.diag(diag)).dissimilarities)


def test_float32_measurements_are_computed_in_float64():
    rng = np.random.default_rng(5)
    ds = make_dataset(rng, 5, [2] * 5, 8)
    ds32 = Dataset(ds.measurements.astype(np.float32), obs_descriptors=ds.obs_descriptors)
    ours = calc_rdm(ds32, "correlation", descriptor="stimulus")
    assert ours.dissimilarities.dtype == np.float64
    assert_close(ours.dissimilarities,
                 rsa_calc(ds32, "correlation", descriptor="stimulus").dissimilarities)


def test_euclidean_accurate_with_large_offset():
    # centring before the Gram product keeps float64 accuracy when patterns share a big mean
    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 20)) + 1e6
    ours = calc_rdm(Dataset(x), "euclidean").dissimilarities[0]
    diffs = x[:, None, :] - x[None, :, :]  # direct (n, n, D) reference, fine at this size
    exact = (diffs**2).sum(-1)[np.triu_indices(6, 1)] / 20
    assert_close(ours, exact)


def test_hand_computed_euclidean_and_correlation():
    ds = Dataset(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 2.0, 4.0]]))
    np.testing.assert_allclose(calc_rdm(ds, "euclidean").dissimilarities[0],
                               [8 / 3, 1 / 3, 13 / 3], rtol=1e-12)
    r13 = np.corrcoef([1, 2, 3], [1, 2, 4])[0, 1]
    np.testing.assert_allclose(calc_rdm(ds, "correlation").dissimilarities[0],
                               [2.0, 1 - r13, 1 + r13], rtol=1e-12)


def test_device_argument_cpu():
    rng = np.random.default_rng(7)
    ds = make_dataset(rng, 4, [2] * 4, 5)
    assert_same_rdms(calc_rdm(ds, "euclidean", descriptor="stimulus", device="cpu"),
                     rsa_calc(ds, "euclidean", descriptor="stimulus"))


@pytest.mark.gpu
def test_device_argument_cuda(device):
    rng = np.random.default_rng(8)
    ds = make_dataset(rng, 6, [3] * 6, 9)
    for method in ("euclidean", "correlation", "crossnobis"):
        assert_same_rdms(calc_rdm(ds, method, descriptor="stimulus", device=device),
                         rsa_calc(ds, method, descriptor="stimulus"))


# --------------------------------------------------------------------------- crossnobis


cv_params = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n_cond": st.integers(2, 6),
    "n_runs": st.integers(2, 4),
    "n_chan": st.integers(1, 8),
    "noise": st.sampled_from(["none", "full", "diag", "list"]),
    "str_labels": st.booleans(),
    "extra_rep": st.booleans(),
})


@SETTINGS
@given(params=cv_params)
def test_crossnobis_matches_rsatoolbox(params):
    rng = np.random.default_rng(params["seed"])
    n_cond, n_runs, d = params["n_cond"], params["n_runs"], params["n_chan"]
    # each condition once per run, plus (optionally) extra repetitions in random runs:
    # unequal numbers of observations per condition and per fold
    runs = [np.concatenate([np.arange(n_runs),
                            rng.integers(0, n_runs, size=int(params["extra_rep"]) * (i % 2))])
            for i in range(n_cond)]
    reps = [len(r) for r in runs]
    ds = make_dataset(rng, n_cond, reps, d, str_labels=params["str_labels"],
                      runs=np.concatenate(runs))
    noise = {
        "none": None,
        "full": spd(rng, d),
        "diag": np.diag(rng.random(d) + 0.5),
        "list": [spd(rng, d, scale=k + 1) for k in range(n_runs)],
    }[params["noise"]]
    kw = {"descriptor": "stimulus", "noise": noise, "cv_descriptor": "run"}
    assert_same_rdms(calc_rdm(ds, "crossnobis", **kw), rsa_calc(ds, "crossnobis", **kw))


@pytest.mark.parametrize("str_labels", [False, True])
def test_crossnobis_default_folds_match_rsatoolbox(str_labels):
    rng = np.random.default_rng(9)
    ds = make_dataset(rng, 5, [3] * 5, 6, str_labels=str_labels)
    assert_same_rdms(calc_rdm(ds, "crossnobis", descriptor="stimulus"),
                     rsa_calc(ds, "crossnobis", descriptor="stimulus"))
    noise = [spd(rng, 6) for _ in range(3)]
    assert_same_rdms(calc_rdm(ds, "crossnobis", descriptor="stimulus", noise=noise),
                     rsa_calc(ds, "crossnobis", descriptor="stimulus", noise=noise))


def test_crossnobis_per_fold_precisions_as_array_and_remove_mean():
    rng = np.random.default_rng(10)
    ds = make_dataset(rng, 4, [3] * 4, 5)
    stack = np.stack([spd(rng, 5) for _ in range(3)])
    kw = {"descriptor": "stimulus", "cv_descriptor": "run", "remove_mean": True}
    assert_close(calc_rdm(ds, "crossnobis", noise=stack, **kw).dissimilarities,
                 rsa_calc(ds, "crossnobis", noise=list(stack), **kw).dissimilarities)
    assert_same_rdms(calc_rdm(ds, "crossnobis", noise=stack[0], **kw),
                     rsa_calc(ds, "crossnobis", noise=stack[0], **kw))


def test_crossnobis_hand_computed():
    # two runs, two conditions, one channel: d = (a1 - b1)(a2 - b2) / D averaged over both folds
    meas = np.array([[1.0], [4.0], [2.0], [7.0]])  # a@run0, b@run0, a@run1, b@run1
    ds = Dataset(meas, obs_descriptors={"stimulus": ["a", "b", "a", "b"], "run": [0, 0, 1, 1]})
    rdm = calc_rdm(ds, "crossnobis", descriptor="stimulus", cv_descriptor="run")
    assert rdm.dissimilarities[0, 0] == pytest.approx((1 - 4) * (2 - 7))


def test_crossnobis_is_unbiased_for_pure_noise():
    # no condition signal: crossnobis averages to ~0 while euclidean stays positive
    rng = np.random.default_rng(11)
    conds, runs = np.tile(np.arange(10), 8), np.repeat(np.arange(8), 10)
    ds = Dataset(rng.normal(size=(80, 50)), obs_descriptors={"c": conds, "r": runs})
    cross = calc_rdm(ds, "crossnobis", descriptor="c", cv_descriptor="r").dissimilarities
    eucl = calc_rdm(ds, "euclidean", descriptor="c").dissimilarities
    assert abs(cross.mean()) < 0.1 * eucl.mean()


def _run_major_dataset(rng, n_cond, n_runs, d, *, per_cell=1, offset=0.0, shuffle=False):
    conds = np.tile(np.repeat(np.arange(n_cond), per_cell), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond * per_cell)
    order = rng.permutation(len(conds)) if shuffle else np.arange(len(conds))
    conds, runs = conds[order], runs[order]
    meas = (rng.normal(size=(len(conds), d)) + rng.normal(size=(n_cond, d))[conds]
            + offset * rng.normal(size=(n_runs, d))[runs] + offset)
    return Dataset(meas, obs_descriptors={"stimulus": conds * 2 + 1, "run": runs})


@pytest.mark.parametrize("noise_kind", ["none", "identity", "diag", "neg_diag", "full"])
@pytest.mark.parametrize("layout", ["run_major", "shuffled", "two_per_cell"])
@pytest.mark.parametrize("remove_mean", [False, True])
def test_crossnobis_balanced_fast_paths_match_rsatoolbox(noise_kind, layout, remove_mean):
    # one observation per condition and run: fold-major rows (a view when stored run by run,
    # a gather when shuffled); two per cell: the balanced rotation on fold sums
    rng = np.random.default_rng(21)
    d = 9
    ds = _run_major_dataset(rng, 7, 4, d, per_cell=2 if layout == "two_per_cell" else 1,
                            shuffle=layout != "run_major")
    noise = {"none": None, "identity": np.eye(d), "diag": np.diag(rng.random(d) + 0.5),
             "neg_diag": np.diag(rng.random(d) - 0.5), "full": spd(rng, d)}[noise_kind]
    kw = {"descriptor": "stimulus", "cv_descriptor": "run", "noise": noise,
          "remove_mean": remove_mean}
    if noise_kind == "neg_diag":
        # rsatoolbox computes with any matrix; a precision that is not positive definite gives
        # meaningless (negative, zero) distances, so brainrdl refuses it by name
        with pytest.raises(DegenerateDataError, match="noise is not positive definite"):
            calc_rdm(ds, "crossnobis", **kw)
        return
    assert_same_rdms(calc_rdm(ds, "crossnobis", **kw), rsa_calc(ds, "crossnobis", **kw))


def test_crossnobis_with_large_shared_pattern_matches_rsatoolbox():
    # a large pattern shared by all conditions (and a run-wise drift) cancels out of every
    # distance; removing it before the Grams keeps the 1e-6 agreement
    rng = np.random.default_rng(22)
    ds = _run_major_dataset(rng, 12, 5, 30, offset=1e3)
    kw = {"descriptor": "stimulus", "cv_descriptor": "run"}
    assert_close(calc_rdm(ds, "crossnobis", **kw).dissimilarities,
                 rsa_calc(ds, "crossnobis", **kw).dissimilarities)


def test_crossnobis_balanced_does_not_modify_the_dataset():
    rng = np.random.default_rng(23)
    ds = _run_major_dataset(rng, 5, 3, 6)
    before = ds.measurements.copy()
    calc_rdm(ds, "crossnobis", descriptor="stimulus", cv_descriptor="run",
             noise=np.diag(rng.random(6) + 0.5))
    np.testing.assert_array_equal(ds.measurements, before)


def test_crossnobis_fast_paths_equal_fold_loop_and_gradcheck():
    from brainrdl.rsa.crossnobis import (
        cross_fold_rdm,
        crossnobis_fold_major,
        crossnobis_from_fold_sums,
        leave_one_out_means,
    )

    gen = torch.Generator().manual_seed(24)
    means = torch.randn(4, 5, 6, dtype=torch.float64, generator=gen)  # (F, n, D)
    prec = torch.rand(6, dtype=torch.float64, generator=gen) + 0.5
    counts = torch.full((5, 4), 3.0, dtype=torch.float64)
    counts[0] = 2.0  # balanced across folds, unequal across conditions
    sums = means.transpose(0, 1) * counts.unsqueeze(-1)
    train, test = leave_one_out_means(sums, counts)
    loop = cross_fold_rdm(train, test * prec)
    torch.testing.assert_close(crossnobis_from_fold_sums(sums, counts, prec), loop)
    train1, test1 = leave_one_out_means(means.transpose(0, 1), torch.ones(5, 4))
    torch.testing.assert_close(crossnobis_fold_major(means, prec),
                               cross_fold_rdm(train1, test1 * prec))
    m = means[:, :4, :3].clone().requires_grad_(True)
    p = prec[:3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda m, p: crossnobis_fold_major(m, p, remove_mean=True), (m, p))
    s = sums[:4, :, :3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s, p: crossnobis_from_fold_sums(s, counts[:4], p), (s, p))


# --------------------------------------------------------------------------- poisson_cv


def _poisson_cv_by_hand(ds, descriptor, cv_descriptor, lam=1.0, weight=0.1):
    """Explicit loops over folds and condition pairs: the estimator averaged over all folds."""
    x = ds.measurements
    conds = np.asarray(ds.obs_descriptors[descriptor])
    runs = np.asarray(ds.obs_descriptors[cv_descriptor])
    values, folds = np.unique(conds), np.unique(runs)
    n, d = len(values), x.shape[1]
    total = np.zeros((n, n))
    for fold in folds:
        train = np.array([x[(conds == v) & (runs != fold)].mean(0) for v in values])
        test = np.array([x[(conds == v) & (runs == fold)].mean(0) for v in values])
        rt, re = (train + lam * weight) / (1 + weight), (test + lam * weight) / (1 + weight)
        for i in range(n):
            for j in range(n):
                total[i, j] += np.sum((rt[i] - rt[j]) * (np.log(re[i]) - np.log(re[j]))) / d
    return (total / len(folds))[np.triu_indices(n, 1)]


def test_poisson_cv_hand_computed():
    rng = np.random.default_rng(12)
    ds = make_dataset(rng, 5, [3, 4, 3, 5, 3], 6, positive=True,
                      runs=np.concatenate([np.arange(3), [0, 1, 2, 0], np.arange(3),
                                           [0, 1, 2, 2, 1], np.arange(3)]))
    ours = calc_rdm(ds, "poisson_cv", descriptor="stimulus", cv_descriptor="run")
    assert_close(ours.dissimilarities[0], _poisson_cv_by_hand(ds, "stimulus", "run"))
    assert ours.dissimilarity_measure == "poisson_cv"


def test_poisson_cv_is_rsatoolbox_averaged_over_every_held_out_fold():
    # rsatoolbox keeps only the fold with the highest label: relabelling each fold to be the
    # last one and averaging rsatoolbox's answers must give ours (and descriptors match).
    rng = np.random.default_rng(13)
    ds = make_dataset(rng, 4, [3] * 4, 5, positive=True)
    ours = calc_rdm(ds, "poisson_cv", descriptor="stimulus", cv_descriptor="run")
    runs = np.asarray(ds.obs_descriptors["run"])
    answers = []
    for fold in range(3):
        relabelled = Dataset(ds.measurements, descriptors=ds.descriptors,
                             obs_descriptors={**ds.obs_descriptors,
                                              "run": np.where(runs == fold, 99, runs)})
        answers.append(rsa_calc(relabelled, "poisson_cv", descriptor="stimulus",
                                cv_descriptor="run"))
    assert_close(ours.dissimilarities, np.mean([a.dissimilarities for a in answers], axis=0))
    single = rsa_calc(ds, "poisson_cv", descriptor="stimulus", cv_descriptor="run")
    assert not np.allclose(ours.dissimilarities, single.dissimilarities)  # the documented bug
    ours.dissimilarities = single.dissimilarities
    assert_same_rdms(ours, single)  # descriptors as rsatoolbox's


def test_poisson_cv_equals_rsatoolbox_with_one_fold_to_hold_out():
    # two folds with identical data: each held-out fold gives the same value, so averaging
    # over all folds and rsatoolbox's last fold agree
    rng = np.random.default_rng(14)
    half = rng.random((4, 6)) * 3
    ds = Dataset(np.vstack([half, half]),
                 obs_descriptors={"stimulus": np.tile(np.arange(4), 2),
                                  "run": np.repeat([0, 1], 4)})
    assert_same_rdms(calc_rdm(ds, "poisson_cv", descriptor="stimulus"),
                     rsa_calc(ds, "poisson_cv", descriptor="stimulus"))


# --------------------------------------------------------------------------- errors


@pytest.fixture
def small():
    return make_dataset(np.random.default_rng(15), 3, [2, 2, 2], 4)


def test_error_unknown_method(small):
    with pytest.raises(ValueError, match=r"method='manhattan'.*'crossnobis'"):
        calc_rdm(small, "manhattan")


def test_error_unknown_descriptor_lists_available(small):
    with pytest.raises(ValueError, match=r"descriptor='stim'.*\['stimulus', 'run', 'category'"):
        calc_rdm(small, "euclidean", descriptor="stim")
    with pytest.raises(ValueError, match=r"cv_descriptor='session'.*available"):
        calc_rdm(small, "crossnobis", descriptor="stimulus", cv_descriptor="session")


def test_error_fewer_than_two_conditions(small):
    one = small.subset_obs("stimulus", [1])
    with pytest.raises(ValueError, match=r"data needs at least 2 conditions.*got 1"):
        calc_rdm(one, "euclidean", descriptor="stimulus")


def test_error_nan_names_observations_and_channels(small):
    meas = small.measurements.copy()
    meas[2, 1] = np.nan
    meas[4, 3] = np.inf
    bad = Dataset(meas, obs_descriptors=small.obs_descriptors)
    with pytest.raises(ValueError, match=r"data\.measurements.*observations.*\[2, 4\].*\[1, 3\]"):
        calc_rdm(bad, "correlation")


def test_error_constant_pattern_for_correlation(small):
    meas = small.measurements.copy()
    labels = np.asarray(small.obs_descriptors["stimulus"])
    meas[labels == labels[0]] = 5.0
    bad = Dataset(meas, obs_descriptors=small.obs_descriptors)
    with pytest.raises(ValueError, match=rf"correlation.*constant.*\[{labels[0]}\]"):
        calc_rdm(bad, "correlation", descriptor="stimulus")


def test_error_crossnobis_single_fold_names_cv_descriptor(small):
    one_run = Dataset(small.measurements,
                      obs_descriptors={**small.obs_descriptors, "run": np.zeros(6, int)})
    with pytest.raises(ValueError, match=r"at least 2 cross-validation folds.*cv_descriptor='run'"):
        calc_rdm(one_run, "crossnobis", descriptor="stimulus", cv_descriptor="run")
    single = small.subset_obs("run", 0)
    with pytest.raises(ValueError, match=r"cv_descriptor=None"):
        calc_rdm(single, "crossnobis", descriptor="stimulus")


def test_error_crossnobis_needs_descriptor_and_full_folds(small):
    with pytest.raises(ValueError, match=r"descriptor must name an obs_descriptor"):
        calc_rdm(small, "crossnobis")
    holes = small.subset_obs("trial", [i for i in range(6)
                                       if not (small.obs_descriptors["run"][i] == 1 and
                                               small.obs_descriptors["stimulus"][i] == 1)])
    with pytest.raises(ValueError, match=r"cv_descriptor='run': condition 1 has no observation"):
        calc_rdm(holes, "crossnobis", descriptor="stimulus", cv_descriptor="run")


def test_error_default_folds_need_equal_repetitions():
    ds = make_dataset(np.random.default_rng(16), 3, [2, 3, 2], 4)
    with pytest.raises(ValueError, match=r"cv_descriptor=None.*same number"):
        calc_rdm(ds, "crossnobis", descriptor="stimulus")


@pytest.mark.parametrize("method", ["mahalanobis", "crossnobis"])
def test_error_noise_shape(small, method):
    with pytest.raises(ValueError, match=r"noise must have shape \(D, D\) = \(4, 4\).*\(3, 3\)"):
        calc_rdm(small, method, descriptor="stimulus", noise=np.eye(3))
    with pytest.raises(ValueError, match=r"noise.*precisions.*2 folds"):
        calc_rdm(small, "crossnobis", descriptor="stimulus", noise=[np.eye(4)] * 3)


def test_error_bad_data_type():
    with pytest.raises(TypeError, match=r"data must be an rsatoolbox Dataset"):
        calc_rdm(np.zeros((3, 4)))
