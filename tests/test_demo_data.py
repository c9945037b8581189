"""The embedded demo study: determinism, stimuli, ground truth, files, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from data_adapters import demo
from data_adapters.demo import load_demo_stimuli, load_task_digits, make_demo_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_demo_study(tmp_path_factory.mktemp("demo"), n_stimuli=40, n_runs=3,
                           n_bold_runs=2, with_nwb=False)


def test_stimuli_are_sklearn_digits_balanced_and_sorted():
    from sklearn.datasets import load_digits

    images, labels, ids = load_demo_stimuli(100, seed=0)
    assert images.shape == (100, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.bincount(labels, minlength=10).tolist() == [10] * 10
    assert ids == sorted(ids) and len(set(ids)) == 100
    digits = load_digits()
    index = [int(s.removeprefix("digit_")) for s in ids]
    np.testing.assert_array_equal(images[:, 0] * 16, digits.images[index])
    np.testing.assert_array_equal(labels, digits.target[index])


def test_stimuli_depend_on_seed_only():
    a, b, c = load_demo_stimuli(30, 1), load_demo_stimuli(30, 1), load_demo_stimuli(30, 2)
    assert a.stimulus_ids == b.stimulus_ids
    assert a.stimulus_ids != c.stimulus_ids


def test_task_digits_are_the_complement():
    brain = load_demo_stimuli(100, seed=3)
    task = load_task_digits(n_stimuli=100, seed=3)
    assert not set(task.stimulus_ids) & set(brain.stimulus_ids)
    assert len(task.stimulus_ids) + len(brain.stimulus_ids) == 1797
    explicit = load_task_digits(exclude_ids=brain.stimulus_ids)
    assert explicit.stimulus_ids == task.stimulus_ids
    np.testing.assert_array_equal(explicit.images, task.images)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_stimuli"):
        load_demo_stimuli(5)
    with pytest.raises(ValueError, match="exclude_ids"):
        load_task_digits(exclude_ids=["cat_0001"])
    with pytest.raises(ValueError, match="n_runs"):
        make_demo_study(tmp_path, n_runs=1, with_nwb=False)


def test_ground_truth_is_squared_distance_per_voxel(study):
    for roi in ("EVC", "IT"):
        pat = study.patterns[roi]
        diff = pat[:, None, :] - pat[None, :, :]
        expected = (diff**2).sum(-1) / pat.shape[1]
        np.testing.assert_allclose(study.ground_truth[roi].get_matrices()[0], expected, rtol=1e-10)
        assert list(study.ground_truth[roi].pattern_descriptors["stimulus"]) == study.stimulus_ids


def test_evc_is_linear_in_pixels_and_it_follows_category(study):
    pixels = study.images.reshape(len(study.images), -1).astype(float)
    x = np.column_stack([pixels, np.ones(len(pixels))])
    coef, *_ = np.linalg.lstsq(x, study.patterns["EVC"], rcond=None)
    np.testing.assert_allclose(x @ coef, study.patterns["EVC"], atol=1e-8)
    d = study.ground_truth["IT"].get_matrices()[0]
    same = study.digit_labels[:, None] == study.digit_labels[None, :]
    off = ~np.eye(len(d), dtype=bool)
    assert d[same & off].mean() < 0.25 * d[~same].mean()


def test_files_hold_patterns_plus_noise(study):
    img = nib.load(study.betas[0])
    assert img.shape[3] == study.n_runs * len(study.stimulus_ids)
    design = pd.read_csv(study.design[0], sep="\t")
    assert design["condition"].tolist() == study.stimulus_ids * study.n_runs
    assert design["run"].tolist() == list(np.repeat([1, 2, 3], len(study.stimulus_ids)))
    atlas = np.asarray(nib.load(study.atlas).dataobj)
    table = pd.read_csv(study.atlas_labels, sep="\t")
    assert dict(zip(table["name"], table["index"])) == study.labels == {"EVC": 1, "IT": 2}
    data = np.asarray(img.dataobj)
    it = data[atlas == 2].T.reshape(study.n_runs, len(study.stimulus_ids), -1)
    noise = it - study.patterns["IT"][None]
    # unbiased noise, of the nominal level (1.5 x uniform(0.5, 1.5) per voxel)
    assert abs(noise.mean()) < 0.05
    assert 1.2 < noise.std() < 1.9
    events = pd.read_csv(study.events[0], sep="\t")
    assert sorted(events["trial_type"]) == study.stimulus_ids
    assert list(events.columns) == ["onset", "duration", "trial_type"]
    assert nib.load(study.bold[0]).header.get_zooms()[3] == study.t_r


def test_deterministic_and_reused(tmp_path, study):
    again = make_demo_study(tmp_path / "a", n_stimuli=40, n_runs=3, n_bold_runs=2,
                            with_nwb=False)
    np.testing.assert_array_equal(
        np.asarray(nib.load(again.betas[0]).dataobj), np.asarray(nib.load(study.betas[0]).dataobj)
    )
    np.testing.assert_array_equal(
        np.asarray(nib.load(again.bold[1]).dataobj), np.asarray(nib.load(study.bold[1]).dataobj)
    )
    stamp = again.betas[0].stat().st_mtime_ns
    reused = make_demo_study(tmp_path / "a", n_stimuli=40, n_runs=3, n_bold_runs=2,
                             with_nwb=False)
    assert reused.betas[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(reused.ground_truth["IT"].get_vectors(),
                                  again.ground_truth["IT"].get_vectors())
    other = make_demo_study(tmp_path / "b", seed=1, n_stimuli=40, n_runs=3, with_bold=False,
                            with_nwb=False)
    assert other.stimulus_ids != study.stimulus_ids


def test_second_subject_leaves_first_unchanged(tmp_path, study):
    two = make_demo_study(tmp_path, n_stimuli=40, n_runs=3, n_subjects=2, with_bold=False,
                          with_nwb=False)
    assert [p.name for p in two.betas] == ["sub-01_betas.nii", "sub-02_betas.nii"]
    np.testing.assert_array_equal(
        np.asarray(nib.load(two.betas[0]).dataobj), np.asarray(nib.load(study.betas[0]).dataobj)
    )


def test_nwb_written_when_ephys_writer_exists(tmp_path):
    pytest.importorskip("data_adapters.demo.ephys")
    s = make_demo_study(tmp_path, n_stimuli=20, n_runs=2, with_bold=False)
    assert s.nwb is not None and s.nwb.exists()
    assert s.ground_truth["latent"].n_cond == 20


def test_cli_make_demo_data(tmp_path, capsys):
    import argparse

    # the sub-command's own parser: brainrdl.cli.main imports every sub-command module, some of
    # which belong to other parts of the project
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(["--out", str(out), "--n-stimuli", "20", "--n-runs", "2",
                              "--no-bold", "--no-nwb", "--seed", "4"])
    assert demo.run(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["n_stimuli"] == 20
    assert "sub-01_betas.nii" in capsys.readouterr().out


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINRDL_CACHE", str(tmp_path))
    assert demo.default_cache_dir() == tmp_path / "demo"
