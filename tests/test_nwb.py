"""data_adapters.ephys.nwb: NWB files written with pynwb in the test, read back by the adapter."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest
import rsatoolbox
from scipy.stats import spearmanr

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402

from data_adapters import ephys  # noqa: E402
from data_adapters.demo.ephys import (  # noqa: E402
    RESPONSE_WINDOW,
    simulate_spike_trains,
    write_demo_nwb,
)
from data_adapters.ephys import nwb  # noqa: E402

RTOL = 1e-6
# binary-fraction times, so onset + window edges are exact and edge spikes are unambiguous
SPIKES = {
    10: [0.5, 1.0, 1.25, 1.5, 3.0, 3.5],  # trial 0 [1.0, 1.5): 1.0, 1.25; trial 2: 3.0
    11: [2.0, 2.25, 2.5, 3.25, 3.375],  # trial 1 (start 2.0): 2.0, 2.25; trial 2 (3.0): 3.25, 3.375
    12: [1.125, 3.0, 3.125, 3.25, 4.5],  # 1.125; 3.0, 3.125, 3.25
}
TRIALS = [(1.0, 1.75, "cat", 0), (2.0, 2.75, "dog", 0), (3.0, 3.75, "cat", 1)]
# hand count, window [0, 0.5) after each start_time: rows trials, columns units 10, 11, 12
HAND = np.array([[2, 0, 1], [0, 2, 0], [1, 2, 3]])


def _nwbfile() -> NWBFile:
    return NWBFile(
        session_description="adapter test",
        identifier="test-session",
        session_start_time=dt.datetime(2021, 5, 1, tzinfo=dt.timezone.utc),
        session_id="sess-1",
    )


def _write(nwbfile: NWBFile, path) -> str:
    with NWBHDF5IO(str(path), mode="w") as io:
        io.write(nwbfile)
    return str(path)


@pytest.fixture(scope="module")
def hand_file(tmp_path_factory):
    """Units with a 'location' column and electrodes, a trials table and an epochs table."""
    f = _nwbfile()
    device = f.create_device(name="probe")
    groups = {
        loc: f.create_electrode_group(
            name=f"shank_{loc}", description="shank", location=loc, device=device
        )
        for loc in ("V1", "IT")
    }
    for loc in ("V1", "IT", "IT"):
        f.add_electrode(group=groups[loc], location=loc)
    f.add_unit_column(name="location", description="region")
    for (uid, times), elec in zip(SPIKES.items(), (0, 1, 2)):
        f.add_unit(id=uid, spike_times=times, electrodes=[elec], location=("V1", "IT", "IT")[elec])
    f.add_trial_column(name="stimulus", description="stimulus id")
    f.add_trial_column(name="repeat", description="repeat index")
    for start, stop, stim, rep in TRIALS:
        f.add_trial(start_time=start, stop_time=stop, stimulus=stim, repeat=rep)
    f.add_epoch_column(name="image", description="image shown")
    for start, stop, stim, _ in TRIALS:
        f.add_epoch(start_time=start, stop_time=stop, image=stim)
    return _write(f, tmp_path_factory.mktemp("nwb") / "hand.nwb")


def test_counts_equal_hand_count(hand_file):
    (ds,) = nwb.datasets_from_nwb(
        hand_file, "stimulus", (0.0, 0.5), measure="count", recording=(0.0, 5.0)
    )
    np.testing.assert_array_equal(ds.measurements, HAND)
    assert ds.obs_descriptors["stimulus"].tolist() == ["cat", "dog", "cat"]
    assert ds.obs_descriptors["repeat"].tolist() == [0, 0, 1]
    assert ds.channel_descriptors["unit"].tolist() == [10, 11, 12]
    assert ds.descriptors["session"] == "sess-1"
    rates = nwb.datasets_from_nwb(hand_file, window=(0.0, 0.5), recording=(0.0, 5.0))[0]
    np.testing.assert_allclose(rates.measurements, HAND / 0.5)


def test_rdms_from_nwb_average_per_stimulus(hand_file):
    rdms = nwb.rdms_from_nwb(hand_file, "stimulus", (0.0, 0.5), recording=(0.0, 5.0))
    assert rdms.dissimilarity_measure == "squared euclidean"  # rsatoolbox's name for the default
    means = {"cat": (HAND[0] + HAND[2]) / 2 / 0.5, "dog": HAND[1] / 0.5}
    expected = np.sum((means["cat"] - means["dog"]) ** 2) / 3  # rsatoolbox: / n_channels
    assert rdms.pattern_descriptors["stimulus"] == ["cat", "dog"]
    assert abs(rdms.dissimilarities[0, 0] - expected) <= RTOL * expected


def test_epochs_table_with_other_stimulus_column(hand_file):
    (ds,) = nwb.datasets_from_nwb(
        hand_file, "image", (0.0, 0.5), intervals="epochs", measure="count", recording=(0.0, 5.0)
    )
    np.testing.assert_array_equal(ds.measurements, HAND)
    # no repeat column in epochs: derived as the occurrence index of each stimulus
    assert ds.obs_descriptors["repeat"].tolist() == [0, 0, 1]


@pytest.mark.parametrize("column", ["location", "auto"])
def test_regions_from_units_column(hand_file, column):
    data = nwb.read_nwb_spikes(hand_file, region_column=column)
    assert data.unit_regions.tolist() == ["V1", "IT", "IT"]
    by_region = nwb.rdms_from_nwb(
        hand_file,
        "stimulus",
        (0.0, 0.5),
        region_column=column,
        recording=(0.0, 5.0),
        measure="count",
    )
    assert sorted(by_region) == ["IT", "V1"]
    cat_it = (HAND[0, 1:] + HAND[2, 1:]) / 2
    expected = np.sum((cat_it - HAND[1, 1:]) ** 2) / 2
    assert abs(by_region["IT"].dissimilarities[0, 0] - expected) <= RTOL * expected


def test_regions_from_electrodes_table(tmp_path):
    f = _nwbfile()
    device = f.create_device(name="probe")
    group = f.create_electrode_group(name="g", description="g", location="mixed", device=device)
    for loc in ("V4", "IT"):
        f.add_electrode(group=group, location=loc)
    f.add_unit(spike_times=[0.1, 1.1], electrodes=[1])
    f.add_unit(spike_times=[0.2, 1.2, 1.3], electrodes=[0])
    f.add_trial_column(name="stimulus", description="s")
    f.add_trial(start_time=0.0, stop_time=0.5, stimulus="a")
    f.add_trial(start_time=1.0, stop_time=1.5, stimulus="b")
    path = _write(f, tmp_path / "electrodes.nwb")
    assert nwb.read_nwb_spikes(path, region_column="location").unit_regions.tolist() == [
        "IT",
        "V4",
    ]
    assert nwb.read_nwb_spikes(path, region_column="auto").unit_regions.tolist() == ["IT", "V4"]


def test_obs_intervals_bound_the_recording(tmp_path):
    f = _nwbfile()
    f.add_unit(spike_times=[0.1, 1.1, 2.1], obs_intervals=[[0.0, 1.6]])
    f.add_unit(spike_times=[0.2, 1.2, 2.2], obs_intervals=[[0.0, 2.5]])
    f.add_trial_column(name="stimulus", description="s")
    for i, stim in enumerate("aba"):
        f.add_trial(start_time=float(i), stop_time=i + 0.5, stimulus=stim)
    path = _write(f, tmp_path / "obs.nwb")
    assert nwb.read_nwb_spikes(path).recording == (0.0, 2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every trial lies inside obs_intervals: no warning
        (ds,) = nwb.datasets_from_nwb(path, "stimulus", (0.0, 0.5), measure="count")
    assert ds.measurements.tolist() == [[1, 1], [1, 1], [1, 1]]


def test_demo_nwb_matches_array_path_and_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    latent = np.repeat(rng.normal(size=(3, 6)) * 2, 3, axis=0) + 0.3 * rng.normal(size=(9, 6))
    ids = [f"img{i}" for i in range(9)]
    kw = {"seed": 7, "n_units": 30, "n_repeats": 4, "regions": ("V1", "IT")}
    path = write_demo_nwb(tmp_path / "demo" / "sub.nwb", latent, ids, **kw)
    sim = simulate_spike_trains(latent, ids, **kw)
    from_file = nwb.rdms_from_nwb(
        path, "stimulus", RESPONSE_WINDOW, method="crossnobis", region_column="location"
    )
    from_arrays = ephys.rdms_from_spikes(
        sim.spike_times,
        sim.trials,
        RESPONSE_WINDOW,
        method="crossnobis",
        unit_regions=sim.unit_regions,
        onset_column="start_time",
    )
    for region in ("V1", "IT"):
        a, b = from_file[region].get_vectors(), from_arrays[region].get_vectors()
        np.testing.assert_allclose(a, b, rtol=RTOL)
        assert from_file[region].rdm_descriptors["subject"] == ["sim01"]
    # poisson RDM over all units follows the true rates' geometry
    poisson = nwb.rdms_from_nwb(path, "stimulus", RESPONSE_WINDOW, method="poisson")
    truth = rsatoolbox.rdm.calc_rdm(  # the reference, independent of brainrdl's engine
        rsatoolbox.data.Dataset(sim.rates, obs_descriptors={"stimulus": np.array(ids)}),
        method="poisson",
        descriptor="stimulus",
    )
    assert spearmanr(poisson.get_vectors()[0], truth.get_vectors()[0])[0] > 0.8


def test_time_resolved_from_nwb(hand_file):
    windows = [(0.0, 0.25), (0.25, 0.5)]
    dss = nwb.datasets_from_nwb(hand_file, windows=windows, measure="count", recording=(0.0, 5.0))
    assert [d.descriptors["window"] for d in dss] == ["[0, 0.25)", "[0.25, 0.5)"]
    np.testing.assert_array_equal(dss[0].measurements + dss[1].measurements, HAND)
    rdms = nwb.rdms_from_nwb(hand_file, "stimulus", windows, recording=(0.0, 5.0))
    assert rdms.n_rdm == 2
    assert list(rdms.rdm_descriptors["window"]) == ["[0, 0.25)", "[0.25, 0.5)"]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_nwb_without_units_is_a_named_error(tmp_path):
    f = _nwbfile()
    f.add_trial_column(name="stimulus", description="s")
    f.add_trial(start_time=0.0, stop_time=1.0, stimulus="a")
    path = _write(f, tmp_path / "nounits.nwb")
    with pytest.raises(ValueError, match="has no Units table"):
        nwb.rdms_from_nwb(path, "stimulus", (0.0, 0.5))


def test_nwb_without_trials_is_a_named_error(tmp_path):
    f = _nwbfile()
    f.add_unit(spike_times=[0.1])
    path = _write(f, tmp_path / "notrials.nwb")
    with pytest.raises(ValueError, match=r"intervals='trials'.*has no such TimeIntervals"):
        nwb.datasets_from_nwb(path, window=(0.0, 0.5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stimulus_column": "image"}, ValueError, r"stimulus_column='image'.*'stimulus'"),
        ({"intervals": "blocks"}, ValueError, r"intervals='blocks'.*\['epochs', 'trials'\]"),
        ({"region_column": "area"}, ValueError, r"region_column='area'"),
        ({"method": "crossnobis"}, ValueError, r"at least 2 folds.*\['dog'\]"),
        ({"method": "poisson", "transform": "zscore"}, ValueError, "non-negative"),
    ],
)
def test_bad_arguments_are_named(hand_file, kwargs, error, match):
    kwargs.setdefault("stimulus_column", "stimulus")
    column = kwargs.pop("stimulus_column")
    with pytest.raises(error, match=match):
        nwb.rdms_from_nwb(hand_file, column, (0.0, 0.5), recording=(0.0, 5.0), **kwargs)


def test_missing_file_and_window_arguments(hand_file, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.nwb"):
        nwb.read_nwb_spikes(tmp_path / "missing.nwb")
    with pytest.raises(ValueError, match="exactly one of window"):
        nwb.datasets_from_nwb(hand_file)
    with pytest.raises(ValueError, match="exactly one of window"):
        nwb.datasets_from_nwb(hand_file, window=(0, 1), windows=[(0, 1)])


def test_public_name_in_ephys_has_the_issue_signature(hand_file):
    import inspect

    from data_adapters.ephys import rdms_from_nwb

    params = inspect.signature(rdms_from_nwb).parameters
    assert list(params)[:3] == ["path", "stimulus_column", "window"]
    assert params["method"].default == "euclidean"
    rdms = rdms_from_nwb(hand_file, "stimulus", (0.0, 0.5), recording=(0.0, 5.0))
    means = np.stack([(HAND[0] + HAND[2]) / 2, HAND[1]]) / 0.5
    expected = np.sum((means[0] - means[1]) ** 2) / 3
    assert abs(rdms.dissimilarities[0, 0] - expected) <= RTOL * expected
