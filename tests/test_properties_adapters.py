"""Properties of the ROI extraction and spike windows that reference tests leave open.

Written to kill mutants that survived the suite (docs/mutation-testing.md).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from data_adapters.fmri import roi_masks


@pytest.mark.parametrize("resample", [False, True])
def test_an_empty_atlas_says_so(resample):
    """An in-memory atlas is on the data grid already: empty is empty, resampling or not."""
    with pytest.raises(ValueError, match=r"^atlas has no labelled \(non-zero\) voxel; expected "
                       "integer ROI labels$"):
        roi_masks((3, 3, 3), np.eye(4), atlas=np.zeros((3, 3, 3), dtype=np.int16),
                  resample=resample)


def test_an_atlas_off_the_data_grid_says_where_to_look(tmp_path):
    """Labels that exist but fall outside the data's field of view after resampling point at the
    affines, not at the labels."""
    atlas = np.zeros((4, 4, 4), dtype=np.int16)
    atlas[1:3, 1:3, 1:3] = 2
    far = np.eye(4)
    far[:3, 3] = 500.0  # 500 mm away from the data grid
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, far), path)
    with pytest.raises(ValueError, match=r"no atlas voxel overlaps the data grid: after resampling "
                       r"the atlas onto the data grid \(nearest neighbour\) every voxel is "
                       r"background \(0\); check that the atlas and the data are in the same "
                       r"space \(their affines\)"), pytest.warns(UserWarning, match="resampling"):
        roi_masks((4, 4, 4), np.eye(4), atlas=path, resample=True)
    # the same empty result without resampling is an empty atlas on the grid, not a space problem
    nib.save(nib.Nifti1Image(np.zeros_like(atlas), np.eye(4)), tmp_path / "empty.nii.gz")
    with pytest.raises(ValueError, match="atlas has no labelled"):
        roi_masks((4, 4, 4), np.eye(4), atlas=tmp_path / "empty.nii.gz", resample=True)


def test_resampled_labels_land_on_the_right_voxels(tmp_path):
    """An atlas on a grid shifted by whole voxels keeps each label on its mm position."""
    atlas = np.zeros((5, 5, 5), dtype=np.int16)
    atlas[1, 1, 1] = 3
    shifted = np.eye(4)
    shifted[:3, 3] = 1.0  # atlas voxel (i, j, k) sits at data voxel (i+1, j+1, k+1)
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, shifted), path)
    with pytest.warns(UserWarning, match="resampling"):
        masks = roi_masks((5, 5, 5), np.eye(4), atlas=path, resample=True)
    assert list(masks) == ["3"]
    assert np.argwhere(masks["3"]).tolist() == [[2, 2, 2]]


# --------------------------------------------------------------------------- spike windows
# Counting is half-open [onset + start, onset + stop); the recording span keeps trials whose
# windows touch its edges; the defaults are those the docstrings state.

from data_adapters.fmri.rois import read_label_table  # noqa: E402


def test_label_tables_name_the_labels_argument_and_need_index_and_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.tsv: labels: no such file"):
        read_label_table(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("value\tlabel\n1\tV1\n")
    with pytest.raises(ValueError, match=r"needs the columns 'index' and 'name'; it has "
                                         r"\['value', 'label'\]"):
        read_label_table(bad)


@pytest.mark.parametrize("value", [1.5, [], [1, 2.5], float("nan"), "V1", True])
def test_label_values_must_be_integers(value):
    """1.5 must not become atlas value 1, nor [] an empty ROI: each is refused by name."""
    with pytest.raises(ValueError, match=r"labels\['V1'\] must be an integer atlas value"):
        read_label_table({"V1": value})
    assert read_label_table({"V1": 2.0, "IT": ["5", 6]}) == {"V1": [2], "IT": [5, 6]}


def _atlas_img(affine=None, shape=(3, 3, 3)):
    data = np.zeros(shape, dtype=np.int16)
    data[0, 0, 0] = 1
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine)


def test_grids_within_the_affine_tolerance_are_the_same_and_others_are_refused_by_default():
    near = np.eye(4)
    near[0, 3] = 1e-4  # below AFFINE_ATOL (1e-3 mm): the same grid, no resampling
    assert roi_masks((3, 3, 3), np.eye(4), atlas=_atlas_img(near))["1"][0, 0, 0]
    base, far = np.eye(4), np.eye(4)
    base[0, 3], far[0, 3] = 10.0, 8.0
    with pytest.raises(ValueError, match=r"^atlas is not on the grid of the data: shape "
                                         r"\(3, 3, 3\) vs \(3, 3, 3\), largest affine "
                                         r"difference 2 "):
        roi_masks((3, 3, 3), base, atlas=_atlas_img(far))  # resample defaults to False


def test_a_4d_image_with_one_volume_is_a_3d_image():
    img = nib.Nifti1Image(np.asarray(_atlas_img().dataobj)[..., None], np.eye(4))
    masks = roi_masks((3, 3, 3), np.eye(4), atlas=img)
    assert masks["1"].shape == (3, 3, 3) and masks["1"].sum() == 1
    shifted = np.eye(4)
    shifted[0, 3] = 1.0  # and resampled from another grid: still one 3D mask
    img = nib.Nifti1Image(np.asarray(_atlas_img().dataobj)[..., None], shifted)
    with pytest.warns(UserWarning, match="resampling"):
        masks = roi_masks((3, 3, 3), np.eye(4), masks={"V1": img}, resample=True)
    assert masks["V1"].shape == (3, 3, 3) and masks["V1"][1, 0, 0]


def test_mask_errors_name_the_mask_and_resample_reaches_masks(tmp_path):
    with pytest.raises(ValueError, match=r"^masks\['V1'\] is an array of shape \(2, 2, 2\)"):
        roi_masks((3, 3, 3), np.eye(4), masks={"V1": np.ones((2, 2, 2))})
    with pytest.raises(ValueError, match=r"^masks is an array of shape \(2, 2, 2\)"):
        roi_masks((3, 3, 3), np.eye(4), masks=np.ones((2, 2, 2)))
    with pytest.raises(FileNotFoundError, match=r"masks\['V1'\]: no such file"):
        roi_masks((3, 3, 3), np.eye(4), masks={"V1": tmp_path / "missing.nii.gz"})
    with pytest.raises(FileNotFoundError, match=r"atlas: no such file"):
        roi_masks((3, 3, 3), np.eye(4), atlas=tmp_path / "missing.nii.gz")
    shifted = np.eye(4)
    shifted[0, 3] = 1.0  # one voxel along x
    with pytest.warns(UserWarning, match="resampling it to the data grid"):
        out = roi_masks((3, 3, 3), np.eye(4), masks={"V1": _atlas_img(shifted)}, resample=True)
    assert out["V1"][1, 0, 0] and out["V1"].sum() == 1


import re  # noqa: E402
import warnings  # noqa: E402

from scipy.stats import zscore as _scipy_zscore  # noqa: E402

from data_adapters import ephys  # noqa: E402


def _brute(trains, onsets, windows):
    out = np.zeros((len(windows), len(onsets), len(trains)), dtype=np.int64)
    for w, (a, b) in enumerate(windows):
        for t, o in enumerate(onsets):
            for u, train in enumerate(trains):
                out[w, t, u] = sum(1 for s in train if o + a <= s < o + b)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_count_spikes_is_the_half_open_double_loop(seed):
    rng = np.random.default_rng(seed)
    # quarter-second grid: spikes land exactly on window edges, and edges are exact in binary
    trains = [np.sort(rng.integers(0, 40, size=n) / 4) for n in (12, 0, 25)]
    onsets = np.array([1.0, 3.5, 2.0, 6.25])  # not sorted: order is the trial table's
    windows = np.array([[0.0, 0.5], [0.5, 1.0], [-0.25, 0.75]])
    got = ephys.count_spikes(trains, onsets, windows)
    assert got.shape == (3, 4, 3)
    np.testing.assert_array_equal(got, _brute(trains, onsets, windows))


def test_a_spike_on_the_start_edge_counts_and_one_on_the_stop_edge_does_not():
    train = [np.array([1.0, 1.5])]
    assert ephys.count_spikes(train, np.array([1.0]), np.array([[0.0, 0.5]])).item() == 1
    assert ephys.count_spikes(train, np.array([1.0]), np.array([[0.5, 1.0]])).item() == 1
    assert ephys.count_spikes(train, np.array([0.5]), np.array([[0.5, 1.0]])).item() == 1


def test_trials_whose_windows_touch_the_recording_edges_are_kept():
    spikes = [np.array([0.25, 1.25, 1.75])]
    trials = {"onset": [0.0, 1.0, 1.5], "stimulus": ["a", "b", "c"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no trial may be excluded
        ds = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), measure="count",
                                       recording=(0.0, 2.0))
    assert ds.measurements.ravel().tolist() == [1.0, 1.0, 1.0]
    # one step over either edge excludes that trial (and says so)
    with pytest.warns(UserWarning, match="1 of 3 trials"):
        ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 1.75))
    with pytest.warns(UserWarning, match="1 of 3 trials"):
        ephys.dataset_from_spikes(spikes, trials, (-0.25, 0.5), recording=(0.0, 2.0))


def test_inferred_recording_runs_from_zero_or_the_first_spike_to_the_last_spike():
    trials = {"onset": [-1.0, 0.0, 1.0], "stimulus": ["a", "b", "c"]}
    # the earliest spike at -1.0 extends the span below 0: all three trials fit
    spikes = [np.array([-1.0, 0.25, 1.25]), np.array([0.3, 1.5])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), measure="count")
    assert ds.measurements[:, 0].tolist() == [1.0, 1.0, 1.0]
    # without it the span starts at 0 and the first trial is excluded
    spikes = [np.array([0.25, 1.25]), np.array([0.3, 1.5])]
    with pytest.warns(UserWarning, match=r"1 of 3 trials.*\[0, 1\.5\]"):
        ds = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), measure="count")
    assert ds.obs_descriptors["stimulus"].tolist() == ["b", "c"]


def test_rates_are_counts_over_the_window_length_and_transforms_apply_in_order():
    rng = np.random.default_rng(5)
    spikes = [np.sort(rng.uniform(0, 8, 60)) for _ in range(3)]
    trials = {"onset": [0.0, 2.0, 4.0, 6.0], "stimulus": ["a", "b", "a", "b"]}
    kw = {"recording": (0.0, 8.0)}
    counts = ephys.dataset_from_spikes(spikes, trials, (0.25, 1.0), measure="count", **kw)
    rates = ephys.dataset_from_spikes(spikes, trials, (0.25, 1.0), **kw)
    np.testing.assert_allclose(rates.measurements, counts.measurements / 0.75, rtol=1e-15)
    both = ephys.dataset_from_spikes(spikes, trials, (0.25, 1.0), transform=["sqrt", "zscore"],
                                     **kw)
    np.testing.assert_allclose(both.measurements,
                               _scipy_zscore(np.sqrt(rates.measurements), axis=0), rtol=1e-12)
    assert counts.descriptors["measure"] == "count" and rates.descriptors["measure"] == "rate"
    assert rates.descriptors["window_start"] == 0.25 and rates.descriptors["window_stop"] == 1.0


def test_repeat_is_the_occurrence_index_in_onset_order_with_ties_in_row_order():
    table = ephys.as_trial_table({"onset": [5.0, 1.0, 1.0, 0.0, 2.0],
                                  "stimulus": ["a", "a", "a", "b", "b"]})
    assert table["repeat"].tolist() == [2, 0, 1, 0, 1]
    nwb_style = ephys.as_trial_table({"start_time": [0.0, 1.0], "stimulus": [b"x", b"y"]})
    assert nwb_style["onset"].tolist() == [0.0, 1.0]
    assert nwb_style["stimulus"].tolist() == ["x", "y"]  # bytes decoded


def test_flat_spikes_keep_the_requested_unit_order_and_empty_units():
    trains, ids = ephys.as_spike_trains(np.array([0.3, 0.1, 0.2]), spike_units=[5, 9, 5],
                                        unit_ids=[9, 1, 5])
    assert ids.tolist() == [9, 1, 5]
    assert [t.tolist() for t in trains] == [[0.1], [], [0.2, 0.3]]
    with pytest.raises(ValueError, match="spike_units"):
        ephys.as_spike_trains(np.array([0.3, 0.1]), spike_units=[5, 9], unit_ids=[5])


def test_window_edges_must_be_ordered_and_a_zero_length_window_is_refused():
    assert ephys.as_windows([0.0, 0.1]).shape == (1, 2)
    for bad in [(0.1, 0.1), (0.2, 0.1), [(0.0, 0.1), (0.3, 0.3)]]:
        with pytest.raises(ValueError, match="window"):
            ephys.as_windows(bad)


def test_cross_validated_methods_need_two_folds_and_accept_exactly_two():
    from rsatoolbox.data import Dataset

    rng = np.random.default_rng(6)
    ok = Dataset(rng.poisson(4.0, (4, 3)).astype(float),
                 obs_descriptors={"stimulus": list("abab"), "repeat": [0, 0, 1, 1]})
    assert ephys.rdms_from_datasets(ok, method="poisson_cv").n_cond == 2
    one_fold = Dataset(ok.measurements, obs_descriptors={"stimulus": list("abab"),
                                                         "repeat": [0, 0, 0, 1]})
    with pytest.raises(ValueError, match="at least 2 folds"):
        ephys.rdms_from_datasets(one_fold, method="poisson_cv")
    # non-cross-validated methods do not look at the folds
    assert ephys.rdms_from_datasets(one_fold, method="euclidean").n_cond == 2


def test_region_split_equals_the_rdm_of_each_regions_units():
    from brainrdl.rsa.rdm import calc_rdm

    rng = np.random.default_rng(7)
    spikes = [np.sort(rng.uniform(0, 8, 80)) for _ in range(4)]
    trials = {"onset": np.arange(8.0), "stimulus": list("abcdabcd")}
    regions = ["V4", "IT", "V4", "IT"]
    noise = np.diag([1.0, 2.0, 3.0, 4.0])
    dss = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), unit_regions=regions,
                                     recording=(0.0, 8.0))
    split = ephys.rdms_from_datasets(dss, method="crossnobis", noise=noise)
    assert list(split) == ["V4", "IT"]  # first-appearance order
    for name, cols in (("V4", [0, 2]), ("IT", [1, 3])):
        sub = dss[0].subset_channel("unit", np.asarray(dss[0].channel_descriptors["unit"])[cols])
        ref = calc_rdm(sub, method="crossnobis", descriptor="stimulus",
                       noise=noise[np.ix_(cols, cols)], cv_descriptor="repeat")
        np.testing.assert_allclose(split[name].get_vectors(), ref.get_vectors(), rtol=1e-10)


def test_progress_bar_appears_by_default_only_above_twenty_windows(capsys):
    rng = np.random.default_rng(8)
    spikes = [np.sort(rng.uniform(0, 30, 300)) for _ in range(2)]
    trials = {"onset": [0.0, 10.0, 20.0], "stimulus": ["a", "b", "c"]}
    for n_windows, shown in ((20, False), (21, True)):
        windows = [(0.25 * i, 0.25 * i + 0.25) for i in range(n_windows)]
        dss = ephys.datasets_from_spikes(spikes, trials, windows, recording=(0.0, 30.0),
                                         empty_units="keep")
        ephys.rdms_from_datasets(dss, method="euclidean")
        err = capsys.readouterr().err
        assert ("euclidean RDMs" in err) is shown
        # the bar counts windows: its rate reads "<n>window/s" (or "<n>s/window" when slow)
        assert bool(re.search(r"\dwindow/s|s/window\]", err)) is shown


def test_each_region_rdm_is_labelled_with_its_region_per_window():
    rng = np.random.default_rng(9)
    spikes = [np.sort(rng.uniform(0, 8, 80)) for _ in range(4)]
    trials = {"onset": np.arange(8.0), "stimulus": list("abcdabcd")}
    dss = ephys.datasets_from_spikes(spikes, trials, [(0.0, 0.5), (0.0, 0.25)],
                                     unit_regions=["V4", "IT", "V4", "IT"], recording=(0.0, 8.0))
    split = ephys.rdms_from_datasets(dss, method="euclidean")
    for region, rdms in split.items():
        assert rdms.n_rdm == 2  # one per window
        assert list(rdms.rdm_descriptors["region"]) == [region, region]
        assert list(rdms.rdm_descriptors["roi"]) == [region, region]
        assert list(rdms.rdm_descriptors["window_stop"]) == [0.5, 0.25]


def test_long_lists_in_messages_show_ten_names_and_the_count():
    trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    for n_empty, shown in ((10, True), (11, False)):
        spikes = [np.array([0.1, 1.1])] + [np.array([5.0])] * n_empty  # these never in a window
        with pytest.warns(UserWarning) as record:
            ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 6.0))
        message = str(record[0].message)
        assert (f"({n_empty} in all)" in message) is not shown
        if shown:  # all ten empty units (ids 1..10) are named
            assert str(list(range(1, 11))) in message


def test_documented_defaults_are_the_ones_used():
    """method='poisson', descriptor='stimulus', cv_descriptor='repeat', measure='rate'."""
    rng = np.random.default_rng(10)
    spikes = [np.sort(rng.uniform(0, 8, 120)) for _ in range(3)]
    trials = {"onset": np.arange(8.0), "stimulus": list("abcdabcd"),
              "repeat": [0, 0, 0, 0, 1, 1, 1, 1], "run": [1, 0, 1, 0, 0, 1, 0, 1]}
    dss = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 8.0))
    explicit = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 8.0),
                                          measure="rate", empty_units="drop")
    np.testing.assert_array_equal(dss[0].measurements, explicit[0].measurements)
    default = ephys.rdms_from_datasets(dss)
    named = ephys.rdms_from_datasets(dss, method="poisson", descriptor="stimulus")
    np.testing.assert_allclose(default.get_vectors(), named.get_vectors(), rtol=1e-12)
    cv = ephys.rdms_from_datasets(dss, method="poisson_cv")
    cv_named = ephys.rdms_from_datasets(dss, method="poisson_cv", cv_descriptor="repeat")
    cv_run = ephys.rdms_from_datasets(dss, method="poisson_cv", cv_descriptor="run")
    np.testing.assert_allclose(cv.get_vectors(), cv_named.get_vectors(), rtol=1e-12)
    assert not np.allclose(cv.get_vectors(), cv_run.get_vectors())  # the folds matter
    from_spikes = ephys.rdms_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 8.0))
    np.testing.assert_allclose(from_spikes.get_vectors(), default.get_vectors(), rtol=1e-12)


def test_trial_table_columns_defaults_and_named_errors():
    given = ephys.as_trial_table({"onset": [0, 1], "start_time": [5.0, 6.0],
                                  "stimulus": ["a", "a"], "repeat": [7, 3]})
    assert given["onset"].tolist() == [0.0, 1.0]  # 'onset' wins over NWB's 'start_time'
    assert given["onset"].dtype == np.float64  # seconds, as floats
    assert given["repeat"].tolist() == [7, 3]  # a 'repeat' column is used as given
    assert len(ephys.as_trial_table({"onset": [2.0], "stimulus": ["a"]})) == 1  # one trial is fine
    with pytest.raises(ValueError, match=r"\bonset_column\b"):
        ephys.as_trial_table({"time": [0.0], "stimulus": ["a"]})
    with pytest.raises(ValueError, match=r"\bstimulus_column\b"):
        ephys.as_trial_table({"onset": [0.0], "image": ["a"]})
    with pytest.raises(ValueError, match=r"rows \[1, 3\]"):
        ephys.as_trial_table({"onset": [0.0, "soon", 2.0, None], "stimulus": list("abcd")})
    with pytest.raises(ValueError, match=r"\btrials\b"):
        ephys.as_trial_table({"onset": [], "stimulus": []})


def test_repeat_index_keeps_row_order_among_many_simultaneous_onsets():
    n = 64
    table = ephys.as_trial_table({"onset": np.zeros(n), "stimulus": ["a", "b"] * (n // 2)})
    assert table["repeat"].tolist() == [i // 2 for i in range(n)]


def test_integer_inputs_become_float_seconds():
    trains, _ = ephys.as_spike_trains(np.array([3, 1, 2]), spike_units=[0, 0, 1])
    assert all(t.dtype == np.float64 for t in trains)
    assert ephys.as_windows((0, 1)).dtype == np.float64


def test_counts_are_int64_and_an_empty_window_list_is_refused():
    got = ephys.count_spikes([np.array([0.1, 0.2])], np.array([0.0]), np.array([[0.0, 1.0]]))
    assert got.dtype == np.int64  # documented: counts, not rates
    with pytest.raises(ValueError, match="window"):
        ephys.as_windows(np.zeros((0, 2)))


def test_unsorted_trains_count_like_sorted_ones():
    trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    kw = {"measure": "count", "recording": (0.0, 2.0), "empty_units": "keep"}
    unsorted = {0: np.array([1.2, 0.1]), 1: np.array([0.1, 1.3, 0.2, 1.1])}  # all >= the first
    ordered = {k: np.sort(v) for k, v in unsorted.items()}
    got = ephys.dataset_from_spikes(unsorted, trials, (0.0, 0.5), **kw).measurements
    np.testing.assert_array_equal(
        got, ephys.dataset_from_spikes(ordered, trials, (0.0, 0.5), **kw).measurements)
    assert got.tolist() == [[1.0, 2.0], [1.0, 2.0]]


def test_recording_span_and_method_checks_name_their_argument():
    spikes = [np.array([0.1, 1.1]), np.array([0.2, 1.2])]
    trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    for bad in [(2.0, 1.0), (1.0, 1.0)]:
        with pytest.raises(ValueError, match=r"\brecording\b"):
            ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=bad)
    with pytest.raises(ValueError, match=r"\bmethod\b"):
        ephys.rdms_from_spikes(spikes, trials, (0.0, 0.5), method="manhattan",
                               recording=(0.0, 2.0))
    for method in ("poisson", "poisson_cv"):
        with pytest.raises(ValueError, match="zscore"):
            ephys.check_method_transform(method, "zscore")


def test_negative_rates_are_refused_only_by_the_poisson_methods():
    from rsatoolbox.data import Dataset

    rng = np.random.default_rng(16)
    ds = Dataset(rng.normal(size=(8, 3)),
                 obs_descriptors={"stimulus": list("abcdabcd"), "repeat": [0] * 4 + [1] * 4})
    for method in ("poisson", "poisson_cv"):
        with pytest.raises(ValueError, match="non-negative"):
            ephys.rdms_from_datasets(ds, method=method)
    assert ephys.rdms_from_datasets(ds, method="euclidean").n_cond == 4


def test_crossnobis_noise_reaches_the_rdm_with_and_without_regions():
    rng = np.random.default_rng(17)
    spikes = [np.sort(rng.uniform(0, 8, 80)) for _ in range(3)]
    trials = {"onset": np.arange(8.0), "stimulus": list("abcdabcd")}
    noise = np.diag([1.0, 5.0, 0.2])
    kw = {"method": "crossnobis", "recording": (0.0, 8.0)}
    plain = ephys.rdms_from_spikes(spikes, trials, (0.0, 0.5), **kw)
    weighted = ephys.rdms_from_spikes(spikes, trials, (0.0, 0.5), noise=noise, **kw)
    assert not np.allclose(plain.get_vectors(), weighted.get_vectors())
    dss = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 8.0))
    np.testing.assert_allclose(
        weighted.get_vectors(),
        ephys.rdms_from_datasets(dss, method="crossnobis", noise=noise).get_vectors(),
        rtol=1e-12)


def test_rdms_from_spikes_cross_validates_over_the_given_descriptor():
    """cv_descriptor reaches the RDM: folds by run (2) differ from the default repeats (4)."""
    rng = np.random.default_rng(5)
    onsets = np.arange(8) * 1.0
    trials = {"onset": onsets, "stimulus": list("abababab"), "run": [0, 0, 0, 0, 1, 1, 1, 1]}
    spikes = {u: np.sort(rng.uniform(0, 8.0, 60)) for u in range(3)}
    kw = {"recording": (0.0, 8.0)}
    by_run = ephys.rdms_from_spikes(spikes, trials, (0.0, 0.9), method="poisson_cv",
                                    cv_descriptor="run", **kw)
    datasets = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.9), **kw)
    expected = ephys.rdms_from_datasets(datasets, method="poisson_cv", cv_descriptor="run")
    np.testing.assert_allclose(by_run.dissimilarities, expected.dissimilarities, rtol=1e-12)
    by_repeat = ephys.rdms_from_datasets(datasets, method="poisson_cv")
    assert not np.allclose(by_run.dissimilarities, by_repeat.dissimilarities)


def test_resampling_is_nearest_neighbour_so_a_mask_stays_a_mask():
    """A 0.4-voxel shift: nearest neighbour maps each voxel back to itself, where an
    interpolating resampler would spread the mask onto its neighbours."""
    shifted = np.eye(4)
    shifted[0, 3] = 0.4
    data = np.zeros((3, 3, 3), dtype=np.int16)
    data[1, 1, 1] = 1  # inside the grid, away from its edges
    with pytest.warns(UserWarning, match="resampling"):
        out = roi_masks((3, 3, 3), np.eye(4), masks={"V1": nib.Nifti1Image(data, shifted)},
                        resample=True)
    assert out["V1"][1, 1, 1] and out["V1"].sum() == 1


def test_resampled_masks_keep_every_non_zero_voxel_however_small():
    """"Non-zero = inside" also after resampling: on a grid shifted by whole voxels the mask is
    the source shifted, tiny values included. (nilearn's shortcut for whole-voxel shifts,
    taken without ``force_resample``, crops the image to values above 1e-8 of its largest
    first, and would lose a voxel of 1e-12 at the edge of the bounding box.)"""
    shifted = np.eye(4)
    shifted[0, 3] = 1.0  # source voxel (i, j, k) is data voxel (i + 1, j, k)
    data = np.zeros((4, 4, 4))
    data[0, 0, 0] = data[1, 2, 2] = 1.0
    data[3, 3, 3] = 1e-12
    with pytest.warns(UserWarning, match="resampling"):
        out = roi_masks((5, 4, 4), np.eye(4), masks={"V1": nib.Nifti1Image(data, shifted)},
                        resample=True)
    assert np.argwhere(out["V1"]).tolist() == [[1, 0, 0], [2, 2, 2], [4, 3, 3]]


def test_only_the_cross_validated_methods_read_the_cv_descriptor():
    """A Dataset without the default cv_descriptor ("repeat") still gives the non-cross-validated
    RDMs, equal to the engine's own; only poisson_cv and crossnobis ask for the folds."""
    from rsatoolbox.data import Dataset

    from brainrdl.rsa.rdm import calc_rdm

    rng = np.random.default_rng(10)
    ds = Dataset(rng.poisson(5.0, size=(8, 3)).astype(float),
                 obs_descriptors={"stimulus": list("abcdabcd")})
    for method in ("poisson", "correlation", "euclidean"):
        got = ephys.rdms_from_datasets(ds, method=method)
        ref = calc_rdm(ds, method=method, descriptor="stimulus")
        np.testing.assert_allclose(got.get_vectors(), ref.get_vectors(), rtol=1e-12)
    for method in ("poisson_cv", "crossnobis"):
        with pytest.raises(ValueError, match=r"cv_descriptor='repeat' is not an obs descriptor"):
            ephys.rdms_from_datasets(ds, method=method)


def test_rdms_from_datasets_names_its_method_argument():
    from rsatoolbox.data import Dataset

    ds = Dataset(np.ones((4, 2)), obs_descriptors={"stimulus": list("abab")})
    with pytest.raises(ValueError, match=r"^method='manhattan' is not supported; expected one "
                                         r"of .*'poisson'"):
        ephys.rdms_from_datasets(ds, method="manhattan")


def test_region_split_without_noise_is_each_regions_crossnobis_with_the_identity():
    from brainrdl.rsa.rdm import calc_rdm

    rng = np.random.default_rng(18)
    spikes = [np.sort(rng.uniform(0, 8, 80)) for _ in range(4)]
    trials = {"onset": np.arange(8.0), "stimulus": list("abcdabcd")}
    dss = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), unit_regions=["V4", "IT"] * 2,
                                     recording=(0.0, 8.0))
    split = ephys.rdms_from_datasets(dss, method="crossnobis")
    for name, cols in (("V4", [0, 2]), ("IT", [1, 3])):
        sub = dss[0].subset_channel("unit", np.asarray(dss[0].channel_descriptors["unit"])[cols])
        ref = calc_rdm(sub, method="crossnobis", descriptor="stimulus", cv_descriptor="repeat")
        np.testing.assert_allclose(split[name].get_vectors(), ref.get_vectors(), rtol=1e-10)
        np.testing.assert_array_equal(split[name].descriptors["noise"], np.eye(2))


def test_windows_are_aligned_by_the_descriptor_not_by_another_pattern_descriptor():
    """Each window's RDM is that window's own RDM over the ``descriptor`` conditions, even when
    another per-condition descriptor (listed first, unique per condition) orders them otherwise
    in a later window."""
    from rsatoolbox.data import Dataset

    from brainrdl.rsa.rdm import calc_rdm

    rng = np.random.default_rng(19)
    dss = [Dataset(rng.normal(size=(6, 4)),
                   obs_descriptors={"label": labels * 2, "stimulus": list("abcabc")})
           for labels in ([1, 2, 3], [3, 1, 2])]
    got = ephys.rdms_from_datasets(dss, method="euclidean")
    for i, ds in enumerate(dss):
        ref = calc_rdm(ds, method="euclidean", descriptor="stimulus")
        np.testing.assert_allclose(got.get_vectors()[i], ref.get_vectors()[0], rtol=1e-12)
    assert list(got.pattern_descriptors["stimulus"]) == ["a", "b", "c"]


def test_datasets_from_spikes_reads_the_named_trial_columns():
    """onset_column, stimulus_column and repeat_column reach the trial table (decoy columns with
    the default names hold other values), and a 'repeat' column is used as given by default."""
    spikes = [np.array([0.1, 1.2, 2.3, 3.4])]
    trials = {"t": [0.0, 1.0, 2.0, 3.0], "onset": [9.0] * 4,
              "image": list("abab"), "stimulus": list("zzzz"),
              "rep": [5, 5, 6, 6], "repeat": [1, 1, 0, 0]}
    ds = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), measure="count",
                                   recording=(0.0, 4.0), onset_column="t",
                                   stimulus_column="image", repeat_column="rep")
    assert ds.measurements.ravel().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert list(ds.obs_descriptors["stimulus"]) == list("abab")
    assert list(ds.obs_descriptors["repeat"]) == [5, 5, 6, 6]
    default = ephys.dataset_from_spikes(spikes, {**trials, "onset": trials["t"]}, (0.0, 0.5),
                                        recording=(0.0, 4.0))
    assert list(default.obs_descriptors["repeat"]) == [1, 1, 0, 0]  # given, not derived


def test_region_split_keeps_the_folds_and_the_progress_bar(capsys):
    """With regions, cross-validation uses the given cv_descriptor (not the occurrence index)
    and progress=True shows the bar, as without regions."""
    from brainrdl.rsa.rdm import calc_rdm

    rng = np.random.default_rng(20)
    spikes = [np.sort(rng.uniform(0, 8, 160)) for _ in range(4)]
    trials = {"onset": np.arange(8.0), "stimulus": list("abcdabcd"),
              "run": [1, 0, 1, 0, 0, 1, 0, 1]}
    dss = ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), unit_regions=["V4", "IT"] * 2,
                                     recording=(0.0, 8.0))
    split = ephys.rdms_from_datasets(dss, method="poisson_cv", cv_descriptor="run",
                                     progress=True)
    assert "poisson_cv RDMs" in capsys.readouterr().err
    for name, cols in (("V4", [0, 2]), ("IT", [1, 3])):
        sub = dss[0].subset_channel("unit", np.asarray(dss[0].channel_descriptors["unit"])[cols])
        ref = calc_rdm(sub, method="poisson_cv", descriptor="stimulus", cv_descriptor="run")
        np.testing.assert_allclose(split[name].get_vectors(), ref.get_vectors(), rtol=1e-10)


def test_fold_errors_list_the_stimuli_in_sorted_order():
    from rsatoolbox.data import Dataset

    ds = Dataset(np.ones((5, 2)), obs_descriptors={"stimulus": list("dcbab"),
                                                   "repeat": [0, 0, 0, 1, 1]})
    with pytest.raises(ValueError, match=r"these have fewer: \['a', 'c', 'd'\]$"):
        ephys.rdms_from_datasets(ds, method="poisson_cv")


def test_recording_must_be_one_ordered_pair_and_the_warning_says_where_the_span_came_from():
    spikes = [np.array([0.1, 1.1, 2.1])]
    trials = {"onset": [0.0, 1.0, 5.0], "stimulus": ["a", "b", "a"]}
    for bad in [(1.0, 1.0), (0.0, 5.0, 9.0), (2.0, 1.0)]:
        with pytest.raises(ValueError, match=r"^recording must be \(t_start, t_stop\) with "
                                             r"t_start < t_stop; got "):
            ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=bad)
    with pytest.warns(UserWarning, match=r"^1 of 3 trials have a window outside the recording "
                                         r"\[0, 3\] s \(given by recording=\); excluded$"):
        ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 3.0))
    with pytest.warns(UserWarning, match=r"^1 of 3 trials have a window outside the recording "
                                         r"\[0, 2.1\] s \(inferred: 0 \(or the first spike\) to "
                                         r"the last spike; pass recording=\(t_start, t_stop\)\); "
                                         r"excluded$"):
        ephys.datasets_from_spikes(spikes, trials, (0.0, 0.5))


def test_unit_regions_are_stored_as_given_not_coerced_to_a_common_type():
    spikes = [np.array([0.1, 1.1])] * 3
    trials = {"onset": [0.0, 1.0], "stimulus": ["a", "b"]}
    ds = ephys.dataset_from_spikes(spikes, trials, (0.0, 0.5), recording=(0.0, 2.0),
                                   unit_regions=[1, "V1", b"IT"])
    assert ds.channel_descriptors["region"].tolist() == [1, "V1", "IT"]  # bytes decoded


@pytest.mark.parametrize("seed", range(3))
def test_repeat_index_is_the_occurrence_count_by_onset_then_row(seed):
    """The derived repeat is the literal count: trials ordered by onset, ties by row (a stable
    order; numpy's default argsort reorders ties)."""
    rng = np.random.default_rng(seed)
    onsets = rng.integers(0, 3, 40).astype(float)
    stimuli = rng.choice(list("ab"), 40).tolist()
    seen: dict[str, int] = {}
    expected = [0] * 40
    for row in sorted(range(40), key=lambda r: (onsets[r], r)):
        expected[row] = seen.get(stimuli[row], 0)
        seen[stimuli[row]] = expected[row] + 1
    table = ephys.as_trial_table({"onset": onsets, "stimulus": stimuli})
    assert table["repeat"].tolist() == expected


def test_spike_trains_and_their_errors_whatever_the_container():
    """Per-unit trains are float64 seconds for dicts and lists too; what is not a container
    of spike times, or flat arrays of different lengths, is refused by name."""
    trains, ids = ephys.as_spike_trains({"u": [3, 1], "v": [2]})
    assert [t.dtype for t in trains] == [np.float64] * 2 and ids.tolist() == ["u", "v"]
    assert [t.tolist() for t in trains] == [[1.0, 3.0], [2.0]]
    trains, _ = ephys.as_spike_trains([[3, 1], np.array([2], dtype=np.int32)])
    assert [t.dtype for t in trains] == [np.float64] * 2
    for bad in (5, "abc", b"abc"):
        with pytest.raises(TypeError, match=r"^spike_times must be a dict \{unit: times\}, a "
                                            r"list of per-unit time arrays or a flat array"):
            ephys.as_spike_trains(bad)
    for times, units in (([0.1, 0.2], [0]), (np.zeros((2, 2)), np.zeros((2, 2)))):
        with pytest.raises(ValueError, match=r"^spike_times and spike_units must be 1-d arrays "
                                             r"of the same length"):
            ephys.as_spike_trains(times, spike_units=units)
