"""BIDS / fMRIPrep reader: files found by nilearn, RDMs equal to the single-subject GLM path."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from data_adapters.bids import BIDSDataError, check_bids_subjects, rdms_from_bids
from data_adapters.demo.bids import MOTION_CONFOUNDS, write_demo_bids
from data_adapters.fmri import rdms_from_bold


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    return write_demo_bids(tmp_path_factory.mktemp("bids"), n_subjects=3, n_runs=2, seed=1)


@pytest.fixture
def bids_copy(bids, tmp_path):
    """A writable copy for tests that break the dataset."""
    shutil.copytree(bids.root, tmp_path / "ds")
    return tmp_path / "ds"


def test_demo_dataset_is_bids_shaped(bids):
    desc = json.loads((bids.root / "dataset_description.json").read_text())
    deriv = json.loads((bids.derivatives / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and "BIDSVersion" in desc
    assert deriv["DatasetType"] == "derivative"
    conf = pd.read_csv(bids.confounds["sub-01"][0], sep="\t")
    assert set(MOTION_CONFOUNDS) <= set(conf.columns)
    assert np.isnan(conf["framewise_displacement"].iloc[0])  # fMRIPrep's n/a first row
    with open(bids.confounds["sub-01"][0]) as fh:
        assert "n/a" in fh.read()


def test_rdms_equal_the_single_subject_path(bids):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rdms = rdms_from_bids(bids.root, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                              progress=False)
    assert sorted(rdms) == ["EVC", "IT"]
    assert rdms.failures.empty
    for roi, rdm in rdms.items():
        assert rdm.rdm_descriptors["subject"] == bids.subjects
        assert rdm.rdm_descriptors["session"] == ["n/a"] * 3
        assert rdm.dissimilarity_measure == "crossnobis"
        assert list(rdm.pattern_descriptors["stimulus"]) == bids.stimulus_ids
        for i, sub in enumerate(bids.subjects):
            conf = [pd.read_csv(p, sep="\t")[list(MOTION_CONFOUNDS)].fillna(0.0)
                    for p in bids.confounds[sub]]
            ref = rdms_from_bold(bids.bold[sub], bids.events[sub], t_r=bids.t_r,
                                 atlas=bids.atlas, labels=bids.labels, confounds=conf,
                                 subject=sub)[roi]
            np.testing.assert_allclose(rdm.dissimilarities[i], ref.dissimilarities[0],
                                       rtol=1e-10)
    # subjects really differ (not one subject copied three times)
    d = rdms["IT"].dissimilarities
    assert not np.allclose(d[0], d[1])


def test_confounds_remove_the_motion_signal(bids, tmp_path):
    """The demo BOLD = signal + noise + motion; with motion=0 everything else is identical, so
    regressing the motion confounds must give the motion-free RDM, and not regressing must not."""
    still = write_demo_bids(tmp_path / "still", n_subjects=1, n_runs=2, seed=1, motion=0.0)
    kw = {"task": bids.task, "atlas": bids.atlas, "labels": bids.labels, "subjects": ["01"],
          "progress": False}
    ref = rdms_from_bids(still.root, **kw)["IT"].dissimilarities
    with_conf = rdms_from_bids(bids.root, **kw)["IT"].dissimilarities
    without = rdms_from_bids(bids.root, confounds=None, **kw)["IT"].dissimilarities
    np.testing.assert_allclose(with_conf, ref, rtol=1e-3)  # float32 NIfTI rounding only
    assert np.abs(without - ref).max() > 0.2 * np.abs(ref).max()


def test_subject_selection_and_prefixes(bids):
    rdms = rdms_from_bids(bids.root, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                          subjects=["sub-03", "01"], progress=False)
    assert rdms["EVC"].rdm_descriptors["subject"] == ["sub-01", "sub-03"] or \
        rdms["EVC"].rdm_descriptors["subject"] == ["sub-03", "sub-01"]
    assert rdms["EVC"].n_rdm == 2


def test_missing_events_is_a_named_error_naming_the_file(bids, bids_copy):
    missing = bids_copy / "sub-02" / "func" / f"sub-02_task-{bids.task}_run-2_events.tsv"
    missing.unlink()
    with pytest.raises(BIDSDataError, match=r"sub-02_task-digits_run-2_events\.tsv") as info:
        rdms_from_bids(bids_copy, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                       progress=False)
    assert info.value.failures["subject"].tolist() == ["sub-02"]
    assert "on_error='skip'" in str(info.value)


def test_skip_reports_failures_and_keeps_the_others(bids, bids_copy):
    (bids_copy / "sub-02" / "func" / f"sub-02_task-{bids.task}_run-1_events.tsv").unlink()
    shutil.rmtree(bids_copy / "derivatives" / "fmriprep" / "sub-03")
    with pytest.warns(UserWarning, match=r"skipping 2 subject\(s\)"):
        rdms = rdms_from_bids(bids_copy, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                              on_error="skip", progress=False)
    assert rdms["IT"].rdm_descriptors["subject"] == ["sub-01"]
    table = rdms.failures.set_index("subject")
    assert sorted(table.index) == ["sub-02", "sub-03"]
    assert table.loc["sub-02", "file"].endswith("sub-02_task-digits_run-1_events.tsv")
    assert "derivatives" in table.loc["sub-03", "file"]
    assert "no preprocessed BOLD" in table.loc["sub-03", "problem"]
    full = rdms_from_bids(bids.root, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                          subjects=["01"], progress=False)
    np.testing.assert_allclose(rdms["IT"].dissimilarities, full["IT"].dissimilarities)


def test_missing_confound_column_names_the_tsv(bids, bids_copy):
    path = (bids_copy / "derivatives" / "fmriprep" / "sub-01" / "func"
            / f"sub-01_task-{bids.task}_run-1_desc-confounds_timeseries.tsv")
    pd.read_csv(path, sep="\t").drop(columns=["rot_z"]).to_csv(path, sep="\t", index=False,
                                                                na_rep="n/a")
    ok, failures = check_bids_subjects(bids_copy, task=bids.task)
    assert ok == ["sub-02", "sub-03"]
    assert failures["file"].tolist() == [str(path)]
    with pytest.raises(BIDSDataError, match=r"desc-confounds_timeseries\.tsv"):
        rdms_from_bids(bids_copy, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                       progress=False)
    # the subject is fine when only available confounds are asked for
    rdms = rdms_from_bids(bids_copy, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                          confounds=["trans_x", "framewise_displacement"], subjects=["01"],
                          progress=False)
    assert rdms["IT"].n_rdm == 1


def test_bad_arguments_are_named(bids, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset_description\.json"):
        rdms_from_bids(tmp_path, task="digits", atlas=bids.atlas, labels=bids.labels)
    with pytest.raises(FileNotFoundError, match="derivatives folder"):
        rdms_from_bids(bids.root, task="digits", derivatives="derivatives/nope",
                       atlas=bids.atlas, labels=bids.labels)
    with pytest.raises(ValueError, match="on_error"):
        rdms_from_bids(bids.root, task="digits", on_error="ignore")
    with pytest.raises(TypeError, match="confounds must be a list"):
        rdms_from_bids(bids.root, task="digits", confounds="trans_x")
    with pytest.raises(BIDSDataError, match="no preprocessed BOLD"):
        rdms_from_bids(bids.root, task="other", atlas=bids.atlas, labels=bids.labels,
                       progress=False)
