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
    with pytest.raises(ValueError, match="needs ROIs"):
        rdms_from_bids(bids.root, task="digits")
    with pytest.raises(ValueError, match="on_error"):
        rdms_from_bids(bids.root, task="digits", atlas=bids.atlas, on_error="ignore")
    with pytest.raises(TypeError, match="confounds must be a list"):
        rdms_from_bids(bids.root, task="digits", atlas=bids.atlas, confounds="trans_x")
    with pytest.raises(BIDSDataError, match="no preprocessed BOLD"):
        rdms_from_bids(bids.root, task="other", atlas=bids.atlas, labels=bids.labels,
                       progress=False)


def test_sessions_are_descriptors_and_optionally_split(tmp_path):
    ds = write_demo_bids(tmp_path / "ses", n_subjects=2, n_runs=2, n_sessions=2, seed=2)
    assert "ses-02" in str(ds.bold["sub-01"][-1])
    kw = {"task": ds.task, "atlas": ds.atlas, "labels": ds.labels, "progress": False}
    pooled = rdms_from_bids(ds.root, **kw)["IT"]
    assert pooled.rdm_descriptors["subject"] == ["sub-01", "sub-02"]
    assert pooled.rdm_descriptors["session"] == ["01+02", "01+02"]
    split = rdms_from_bids(ds.root, per_session=True, **kw)["IT"]
    assert split.rdm_descriptors["subject"] == ["sub-01", "sub-01", "sub-02", "sub-02"]
    assert split.rdm_descriptors["session"] == ["01", "02", "01", "02"]
    # pooled: the four runs of both sessions are the folds, as the single-subject path does
    conf = [pd.read_csv(p, sep="\t")[list(MOTION_CONFOUNDS)] for p in ds.confounds["sub-02"]]
    ref = rdms_from_bold(ds.bold["sub-02"], ds.events["sub-02"], t_r=ds.t_r, atlas=ds.atlas,
                         labels=ds.labels, confounds=conf)["IT"]
    np.testing.assert_allclose(pooled.dissimilarities[1], ref.dissimilarities[0], rtol=1e-10)
    # per session: the session's two runs only
    ref1 = rdms_from_bold(ds.bold["sub-02"][:2], ds.events["sub-02"][:2], t_r=ds.t_r,
                          atlas=ds.atlas, labels=ds.labels, confounds=conf[:2])["IT"]
    np.testing.assert_allclose(split.dissimilarities[2], ref1.dissimilarities[0], rtol=1e-10)


def test_slice_timing_reference_is_honoured(tmp_path):
    """StartTime = 1 s in the preprocessed BOLD's JSON (and events 1 s later on the scanner
    clock): the onsets are shifted back by slice_time_ref * t_r, giving the RDMs of the same data
    simulated with StartTime = 0; ignoring it would not."""
    kw = {"n_subjects": 1, "n_runs": 2, "seed": 3}
    zero = write_demo_bids(tmp_path / "zero", **kw)
    late = write_demo_bids(tmp_path / "late", start_time=1.0, **kw)
    ev0 = pd.read_csv(zero.events["sub-01"][0], sep="\t")
    ev1 = pd.read_csv(late.events["sub-01"][0], sep="\t")
    np.testing.assert_allclose(ev1["onset"], ev0["onset"] + 1.0)
    args = {"task": zero.task, "atlas": zero.atlas, "labels": zero.labels, "progress": False}
    a = rdms_from_bids(zero.root, **args)["IT"].dissimilarities
    b = rdms_from_bids(late.root, **args)["IT"].dissimilarities
    np.testing.assert_allclose(b, a, rtol=1e-6)
    conf = [pd.read_csv(p, sep="\t")[list(MOTION_CONFOUNDS)].fillna(0.0)
            for p in late.confounds["sub-01"]]
    ignored = rdms_from_bold(late.bold["sub-01"], late.events["sub-01"], t_r=late.t_r,
                             atlas=late.atlas, labels=late.labels, confounds=conf)["IT"]
    assert not np.allclose(ignored.dissimilarities, a, rtol=1e-3)


def test_missing_start_time_is_said_once(bids, bids_copy):
    for js in (bids_copy / "derivatives" / "fmriprep").rglob("*desc-preproc_bold.json"):
        meta = json.loads(js.read_text())
        meta.pop("StartTime")
        js.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no StartTime") as record:
        rdms = rdms_from_bids(bids_copy, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                              progress=False)
    assert sum("StartTime" in str(w.message) for w in record) == 1
    assert "sub-01" in str(record[0].message) and "sub-03" in str(record[0].message)
    # StartTime 0 and absent mean the same timing
    ref = rdms_from_bids(bids.root, task=bids.task, atlas=bids.atlas, labels=bids.labels,
                         progress=False)
    np.testing.assert_allclose(rdms["IT"].dissimilarities, ref["IT"].dissimilarities)
