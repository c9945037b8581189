"""data_adapters.ephys and data_adapters.demo.ephys: counts, Datasets, RDMs, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import rsatoolbox
from scipy.stats import spearmanr

from data_adapters import ephys
from data_adapters.demo.ephys import RESPONSE_WINDOW, simulate_spike_trains

RTOL = 1e-6


def _upper(rdms) -> np.ndarray:
    return np.asarray(rdms.get_vectors())


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _brute_counts(trains, onsets, windows) -> np.ndarray:
    """Reference: one comparison per spike, trial, window and unit."""
    out = np.zeros((len(windows), len(onsets), len(trains)), dtype=int)
    for w, (a, b) in enumerate(windows):
        for t, onset in enumerate(onsets):
            for u, train in enumerate(trains):
                out[w, t, u] = sum(onset + a <= s < onset + b for s in train)
    return out


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------
def test_counts_hand_example_half_open_edges():
    # binary fractions so that onset + window edges are exact: a spike exactly on the start edge
    # counts, one exactly on the stop edge does not ([start, stop))
    spikes = {
        "u0": np.array([1.25, 1.5, 1.75, 3.0]),  # trial 1 (onset 1.0): 1.25, 1.5 in; 1.75 out
        "u1": np.array([0.5, 3.25, 3.5, 3.625]),  # trial 2 (onset 3.0): 3.25, 3.5, 3.625 in
    }
    trials = {"onset": [1.0, 3.0], "stimulus": ["a", "b"]}
    ds = ephys.dataset_from_spikes(
        spikes, trials, (0.25, 0.75), measure="count", recording=(0.0, 4.0)
    )
    assert ds.measurements.tolist() == [[2.0, 0.0], [0.0, 3.0]]
    rates = ephys.dataset_from_spikes(spikes, trials, (0.25, 0.75), recording=(0.0, 4.0))
    np.testing.assert_array_equal(rates.measurements, ds.measurements / 0.5)


def test_adjacent_windows_count_each_spike_once():
    train = [np.array([0.0, 0.25, 0.5, 0.75, 1.0])]
    counts = ephys.count_spikes(
        train, np.array([0.0]), np.array([[0, 0.25], [0.25, 0.5], [0.5, 1.0]])
    )
    assert counts[:, 0, 0].tolist() == [1, 1, 2]  # the spike at 1.0 is on the last stop edge


def test_count_spikes_matches_brute_force():
    rng = np.random.default_rng(1)
    trains = [np.sort(rng.uniform(0, 10, size=n)) for n in (0, 5, 40, 17)]
    # put a few spikes exactly on window edges
    trains[2][:3] = [2.0, 2.5, 3.0]
    trains[2].sort()
    onsets = np.array([2.0, 2.5, 6.0, 8.25])
    windows = np.array([[-0.5, 0.0], [0.0, 0.5], [0.25, 1.0]])
    got = ephys.count_spikes(trains, onsets, windows)
    np.testing.assert_array_equal(got, _brute_counts(trains, onsets, windows))


def test_spike_time_input_forms_agree():
    times = {3: np.array([0.1, 0.3, 1.2]), 7: np.array([0.2, 1.1, 1.3, 1.4])}
    trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    kw = {"measure": "count", "recording": (0.0, 2.0)}
    from_dict = ephys.dataset_from_spikes(times, trials, (0.0, 0.5), **kw)
    from_list = ephys.dataset_from_spikes(
        list(times.values()), trials, (0.0, 0.5), unit_ids=[3, 7], **kw
    )
    flat = np.array([1.4, 0.1, 0.2, 1.2, 0.3, 1.1, 1.3])  # unsorted on purpose
    units = np.array([7, 3, 7, 3, 3, 7, 7])
    from_flat = ephys.dataset_from_spikes(flat, trials, (0.0, 0.5), spike_units=units, **kw)
    for ds in (from_dict, from_list, from_flat):
        assert ds.measurements.tolist() == [[2.0, 1.0], [1.0, 3.0]]
        assert ds.channel_descriptors["unit"].tolist() == [3, 7]


def test_repeat_derived_from_order_and_run_kept():
    table = ephys.as_trial_table(
        pd.DataFrame(
            {"onset": [3.0, 0.0, 1.0, 2.0], "stimulus": ["a", "a", "b", "b"], "run": [1, 0, 0, 1]}
        )
    )
    assert table["repeat"].tolist() == [1, 0, 0, 1]  # occurrence index in onset order
    assert table["run"].tolist() == [1, 0, 0, 1]


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------
def test_dataset_descriptors_and_transforms():
    spikes = [np.array([0.1, 0.2, 1.1]), np.array([0.15, 1.05, 1.2, 1.3, 2.1])]
    trials = pd.DataFrame(
        {"onset": [0.0, 1.0, 2.0], "stimulus": ["a", "b", "a"], "repeat": [0, 0, 1]}
    )
    kw = {"recording": (0.0, 3.0), "unit_regions": ["V1", "IT"], "subject": "m1", "session": "s1"}
    ds = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), **kw)
    assert ds.obs_descriptors["stimulus"].tolist() == ["a", "b", "a"]
    assert ds.obs_descriptors["repeat"].tolist() == [0, 0, 1]
    assert ds.channel_descriptors["region"].tolist() == ["V1", "IT"]
    assert ds.descriptors["window"] == "[0, 0.5)"
    assert ds.descriptors["subject"] == "m1" and ds.descriptors["session"] == "s1"
    rates = np.array([[2, 1], [1, 3], [0, 1]]) / 0.5
    np.testing.assert_allclose(ds.measurements, rates)
    sq = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), transform="sqrt", **kw)
    np.testing.assert_allclose(sq.measurements, np.sqrt(rates))
    z = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), transform="zscore", **kw)
    np.testing.assert_allclose(z.measurements, (rates - rates.mean(0)) / rates.std(0))


def test_zscore_constant_unit_warns_and_is_zero():
    spikes = [np.array([0.1, 1.1]), np.array([0.1, 1.1, 1.2])]
    trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    with pytest.warns(UserWarning, match="1 units are constant"):
        ds = ephys.dataset_from_spikes(
            spikes, trials, (0, 0.5), transform="zscore", recording=(0, 2)
        )
    assert ds.measurements[:, 0].tolist() == [0.0, 0.0]
    assert ds.measurements[:, 1].tolist() == [-1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# RDMs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clustered():
    """Three clusters of 4 stimuli: a geometry a working adapter must recover."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 2.0
    latent = np.repeat(centres, 4, axis=0) + 0.3 * rng.normal(size=(12, 8))
    ids = [f"s{i:02d}" for i in range(12)]
    return simulate_spike_trains(latent, ids, seed=3, n_units=60, n_repeats=6, regions=("V1", "IT"))


def _truth(sim, method="poisson"):
    ds = rsatoolbox.data.Dataset(sim.rates, obs_descriptors={"stimulus": sim.stimulus_ids})
    return rsatoolbox.rdm.calc_rdm(ds, method=method, descriptor="stimulus")


def test_simulation_is_deterministic(clustered):
    again = simulate_spike_trains(np.eye(3), ["a", "b", "c"], seed=5, n_units=4)
    same = simulate_spike_trains(np.eye(3), ["a", "b", "c"], seed=5, n_units=4)
    other = simulate_spike_trains(np.eye(3), ["a", "b", "c"], seed=6, n_units=4)
    assert all(np.array_equal(a, b) for a, b in zip(again.spike_times, same.spike_times))
    assert not all(np.array_equal(a, b) for a, b in zip(again.spike_times, other.spike_times))
    # every stimulus appears once per repeat block
    assert (clustered.trials.groupby("repeat")["stimulus"].nunique() == 12).all()


def test_poisson_rdm_recovers_latent_geometry(clustered):
    sim = clustered
    trials = sim.trials.rename(columns={"start_time": "onset"})
    rdms = ephys.rdms_from_spikes(
        sim.spike_times, trials, RESPONSE_WINDOW, method="poisson", recording=(0.0, sim.duration)
    )
    assert rdms.pattern_descriptors["stimulus"] == sim.stimulus_ids
    rho = spearmanr(_upper(rdms)[0], _upper(_truth(sim))[0])[0]
    assert rho > 0.8
    # a broken adapter (labels detached from trials) must fail the same threshold
    shuffled = trials.assign(stimulus=np.random.default_rng(0).permutation(trials["stimulus"]))
    bad = ephys.rdms_from_spikes(
        sim.spike_times, shuffled, RESPONSE_WINDOW, method="poisson", recording=(0.0, sim.duration)
    )
    assert spearmanr(_upper(bad)[0], _upper(_truth(sim))[0])[0] < 0.5


# rsatoolbox's _build_rdms casts NaN into the integer 'repeat' descriptor when averaging
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_rdms_equal_rsatoolbox_on_hand_built_dataset(clustered):
    sim = clustered
    trials = sim.trials.rename(columns={"start_time": "onset"})
    windows = np.array([RESPONSE_WINDOW])
    counts = _fast_reference_counts(sim.spike_times, trials["onset"].to_numpy(), windows)[0]
    by_hand = rsatoolbox.data.Dataset(
        counts / (windows[0, 1] - windows[0, 0]),
        obs_descriptors={
            "stimulus": trials["stimulus"].to_numpy(),
            "repeat": trials["repeat"].to_numpy(),
        },
    )
    for method in ("poisson", "crossnobis", "correlation", "euclidean"):
        ours = ephys.rdms_from_spikes(
            sim.spike_times, trials, RESPONSE_WINDOW, method=method, recording=(0.0, sim.duration)
        )
        cv = "repeat" if method == "crossnobis" else None
        ref = rsatoolbox.rdm.calc_rdm(
            by_hand, method=method, descriptor="stimulus", cv_descriptor=cv
        )
        assert ours.dissimilarity_measure == ref.dissimilarity_measure
        assert ours.pattern_descriptors["stimulus"] == list(ref.pattern_descriptors["stimulus"])
        assert _max_rel_diff(ours.get_vectors(), ref.get_vectors()) <= RTOL, method
    # poisson_cv: brainrdl averages all leave-one-repeat-out folds (rsatoolbox 0.3.2 keeps only
    # the last fold), so the reference is that closed form, computed here in numpy
    ours = ephys.rdms_from_spikes(
        sim.spike_times, trials, RESPONSE_WINDOW, method="poisson_cv", recording=(0.0, sim.duration)
    )
    assert _max_rel_diff(ours.get_vectors()[0], _poisson_cv_reference(by_hand)) <= RTOL


def _poisson_cv_reference(ds) -> np.ndarray:
    x = ds.measurements
    stim = np.asarray(ds.obs_descriptors["stimulus"])
    rep = np.asarray(ds.obs_descriptors["repeat"])
    conds = np.unique(stim)

    def means(mask):
        return np.stack([x[mask & (stim == c)].mean(0) for c in conds])

    total = 0.0
    for fold in np.unique(rep):
        train = (means(rep != fold) + 0.1) / 1.1  # prior_lambda=1, prior_weight=0.1
        test = (means(rep == fold) + 0.1) / 1.1
        k = train @ np.log(test).T
        d = np.diag(k)[:, None] + np.diag(k)[None, :] - k - k.T
        total = total + d / x.shape[1]
    return (total / np.unique(rep).size)[np.triu_indices(conds.size, 1)]


def _fast_reference_counts(trains, onsets, windows):
    # independent of count_spikes: boolean masks per unit (fine for a test-sized session)
    out = np.zeros((len(windows), len(onsets), len(trains)))
    for u, train in enumerate(trains):
        rel = train[None, :] - onsets[:, None]  # (n_trials, n_spikes)
        for w, (a, b) in enumerate(windows):
            out[w, :, u] = ((rel >= a) & (rel < b)).sum(1)
    return out


def test_crossnobis_is_unbiased_for_identical_conditions():
    # 8 pairs of stimuli with identical latent features: their crossnobis distance is
    # noise only, so it averages to about 0 while the distinct pairs stay clearly positive
    rng = np.random.default_rng(2)
    latent = np.repeat(rng.normal(size=(8, 6)), 2, axis=0)
    ids = [f"s{i:02d}" for i in range(16)]
    sim = simulate_spike_trains(latent, ids, seed=4, n_units=40, n_repeats=6)
    trials = sim.trials.rename(columns={"start_time": "onset"})
    rdm = ephys.rdms_from_spikes(
        sim.spike_times,
        trials,
        RESPONSE_WINDOW,
        method="crossnobis",
        transform="sqrt",
        recording=(0.0, sim.duration),
    )
    d = rdm.get_matrices()[0]
    same = np.array([d[2 * i, 2 * i + 1] for i in range(8)])
    distinct = d[np.triu_indices(16, 1)]
    assert abs(same.mean()) < 0.1 * distinct.mean()
    assert abs(same.mean()) < 3 * same.std(ddof=1) / np.sqrt(same.size)  # within noise of 0
    # the biased (not cross-validated) euclidean distance of the same pairs is clearly > 0
    eu = ephys.rdms_from_spikes(
        sim.spike_times,
        trials,
        RESPONSE_WINDOW,
        method="euclidean",
        transform="sqrt",
        recording=(0.0, sim.duration),
    )
    eu_same = np.array([eu.get_matrices()[0][2 * i, 2 * i + 1] for i in range(8)])
    assert eu_same.min() > 0


def test_time_resolved_windows_give_one_rdm_each(clustered):
    sim = clustered
    trials = sim.trials.rename(columns={"start_time": "onset"})
    windows = [(-0.3, 0.0), (0.05, 0.2), (0.2, 0.35)]
    rdms = ephys.rdms_from_spikes(
        sim.spike_times, trials, windows, method="poisson", recording=(0.0, sim.duration)
    )
    assert rdms.n_rdm == 3
    assert list(rdms.rdm_descriptors["window"]) == ["[-0.3, 0)", "[0.05, 0.2)", "[0.2, 0.35)"]
    np.testing.assert_allclose(rdms.rdm_descriptors["window_start"], [-0.3, 0.05, 0.2])
    truth = _upper(_truth(sim))[0]
    rhos = [spearmanr(v, truth)[0] for v in _upper(rdms)]
    # before onset there is no stimulus information; after onset there is
    assert rhos[0] < 0.4 and rhos[1] > 0.6 and rhos[2] > 0.6
    # each window's RDM equals the single-window call
    single = ephys.rdms_from_spikes(
        sim.spike_times, trials, windows[1], method="poisson", recording=(0.0, sim.duration)
    )
    assert _max_rel_diff(_upper(rdms)[1], _upper(single)[0]) <= RTOL


def test_regions_give_one_rdms_per_region(clustered):
    sim = clustered
    trials = sim.trials.rename(columns={"start_time": "onset"})
    windows = [(0.05, 0.2), (0.2, 0.35)]
    by_region = ephys.rdms_from_spikes(
        sim.spike_times,
        trials,
        windows,
        method="euclidean",
        unit_regions=sim.unit_regions,
        recording=(0.0, sim.duration),
    )
    assert sorted(by_region) == ["IT", "V1"]
    for region, rdms in by_region.items():
        assert rdms.n_rdm == 2
        assert list(rdms.rdm_descriptors["roi"]) == [region, region]
        keep = np.flatnonzero(sim.unit_regions == region)
        subset = ephys.rdms_from_spikes(
            [sim.spike_times[i] for i in keep],
            trials,
            windows,
            method="euclidean",
            recording=(0.0, sim.duration),
        )
        assert _max_rel_diff(_upper(rdms), _upper(subset)) <= RTOL


def test_progress_bar_is_optional(clustered, capsys):
    sim = clustered
    trials = sim.trials.rename(columns={"start_time": "onset"})
    windows = [(t, t + 0.05) for t in np.arange(0.0, 0.3, 0.05)]
    rdms = ephys.rdms_from_spikes(
        sim.spike_times,
        trials,
        windows,
        method="euclidean",
        recording=(0.0, sim.duration),
        progress=True,
    )
    assert rdms.n_rdm == 6
    assert "window" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# warnings and errors
# ---------------------------------------------------------------------------------------------
SPIKES = {
    "good": np.array([0.1, 1.1, 2.1, 3.1]),
    "silent": np.array([]),
    "outside": np.array([0.9, 5.0]),
}
TRIALS = {"onset": [0.0, 1.0, 2.0, 3.0], "stimulus": ["a", "b", "a", "b"]}


def test_empty_units_are_named_and_dropped_kept_or_refused():
    with pytest.warns(UserWarning, match=r"2 of 3 units.*'silent', 'outside'.*dropped"):
        ds = ephys.dataset_from_spikes(SPIKES, TRIALS, (0, 0.5), recording=(0, 5))
    assert ds.channel_descriptors["unit"].tolist() == ["good"]
    with pytest.warns(UserWarning, match="kept"):
        ds = ephys.dataset_from_spikes(
            SPIKES, TRIALS, (0, 0.5), recording=(0, 5), empty_units="keep"
        )
    assert ds.n_channel == 3 and ds.measurements[:, 1:].sum() == 0
    with pytest.raises(ValueError, match="'silent'"):
        ephys.dataset_from_spikes(SPIKES, TRIALS, (0, 0.5), recording=(0, 5), empty_units="error")
    with pytest.raises(ValueError, match="no unit has a spike"):
        ephys.dataset_from_spikes({"x": np.array([9.0])}, TRIALS, (0, 0.5), recording=(0, 10))


def test_trials_outside_recording_are_counted_and_excluded():
    with pytest.warns(UserWarning, match=r"2 of 4 trials .* outside the recording"):
        ds = ephys.dataset_from_spikes(
            {"u": SPIKES["good"]}, TRIALS, (0, 0.5), recording=(0.5, 2.6)
        )
    assert ds.obs_descriptors["stimulus"].tolist() == ["b", "a"]
    # inferred from the spikes when recording is not given: the last trial ends after 3.1
    with pytest.warns(UserWarning, match=r"1 of 4 trials.*inferred"):
        ephys.dataset_from_spikes({"u": SPIKES["good"]}, TRIALS, (0, 0.5))
    with pytest.raises(ValueError, match="no trials left"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ephys.dataset_from_spikes({"u": SPIKES["good"]}, TRIALS, (0, 0.5), recording=(10, 20))


@pytest.mark.parametrize("method", ["crossnobis", "poisson_cv"])
def test_too_few_repeats_names_the_stimuli(method):
    trials = {"onset": [0.0, 1.0, 2.0, 3.0, 4.0], "stimulus": ["a", "b", "a", "b", "c"]}
    spikes = {"u": np.arange(0.05, 5.0, 0.1)}
    with pytest.raises(ValueError, match=r"at least 2 folds.*\['c'\]"):
        ephys.rdms_from_spikes(spikes, trials, (0, 0.5), method=method, recording=(0, 5))
    # every stimulus in >= 2 folds but not in every fold: rsatoolbox would misalign the folds
    trials = {
        "onset": np.arange(8.0),
        "stimulus": list("abcabcac"),
        "repeat": [0, 0, 0, 1, 1, 1, 2, 2],
    }
    with pytest.raises(ValueError, match=r"every 'repeat' fold.*\['b'\]"):
        ephys.rdms_from_spikes(
            {"u": np.arange(0.05, 8.0, 0.1)}, trials, (0, 0.5), method=method, recording=(0, 8)
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": (0.5, 0.0)}, "start < stop"),
        ({"window": (0.0, 0.1, 0.2)}, "window must be"),
        ({"method": "spearman"}, "method='spearman'"),
        ({"method": "poisson", "transform": "zscore"}, "non-negative"),
        ({"transform": "log"}, "transform='log'"),
        ({"measure": "hz"}, "measure='hz'"),
        ({"empty_units": "ignore"}, "empty_units='ignore'"),
        ({"trials": {"time": [0.0], "stimulus": ["a"]}}, "no column 'onset'"),
        ({"trials": {"onset": [0.0, 1.0], "stim": ["a", "b"]}}, "stimulus_column"),
        ({"trials": {"onset": [0.0, np.nan], "stimulus": ["a", "b"]}}, "NaN onsets"),
        ({"trials": [1, 2]}, "trials must be a pandas DataFrame"),
        ({"spikes": np.array([0.1, 0.2])}, "pass spike_units"),
        ({"spikes": {"u": [0.1, np.nan]}}, "unit 'u'"),
        ({"spikes": {}}, "no units"),
        ({"unit_regions": ["V1"]}, "one region per unit"),
        ({"trials": {"onset": [0.0, 1.0], "stimulus": ["a", "a"]}}, "at least 2 distinct"),
    ],
)
def test_bad_input_raises_named_error(kwargs, match):
    kwargs = dict(kwargs)  # the parameter dict is shared: a second run must see it whole
    spikes = kwargs.pop("spikes", {"u": np.array([0.1, 1.1]), "v": np.array([0.2, 1.3])})
    trials = kwargs.pop("trials", {"onset": [0.0, 1.0], "stimulus": ["a", "b"]})
    window = kwargs.pop("window", (0.0, 0.5))
    with pytest.raises((ValueError, TypeError), match=match):
        ephys.rdms_from_spikes(spikes, trials, window, recording=(0, 2), **kwargs)


def test_flat_spikes_with_unknown_unit_ids():
    with pytest.raises(ValueError, match="not in unit_ids"):
        ephys.as_spike_trains(np.array([0.1, 0.2]), spike_units=[0, 5], unit_ids=[0, 1])


def test_rdms_use_brainrdl_engine_without_rsatoolbox_fallback(monkeypatch):
    import sys

    spikes = {0: np.array([0.1, 0.2, 2.1]), 1: np.array([1.1, 1.2, 1.3, 3.1])}
    trials = {"onset": [0.0, 1.0, 2.0, 3.0], "stimulus": ["a", "b", "a", "b"]}
    kw = dict(method="euclidean", recording=(0, 4))
    ours = ephys.rdms_from_spikes(spikes, trials, (0.0, 0.5), **kw)
    # a broken brainrdl.rsa.rdm must fail loudly, not silently switch to rsatoolbox's numbers
    monkeypatch.setitem(sys.modules, "brainrdl.rsa.rdm", None)
    with pytest.raises(ImportError):
        ephys.rdms_from_spikes(spikes, trials, (0.0, 0.5), **kw)
    assert ours.n_cond == 2
