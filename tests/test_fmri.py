"""fMRI adapter on beta images: round trip, equality with nilearn + rsatoolbox, bad inputs."""

from __future__ import annotations

import sys
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from rsatoolbox.data import Dataset
from rsatoolbox.data.noise import prec_from_measurements
from rsatoolbox.rdm import calc_rdm, compare

from data_adapters import fmri
from data_adapters.demo import make_demo_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    # default noise and stimulus count: the numbers the acceptance thresholds refer to
    return make_demo_study(tmp_path_factory.mktemp("fmri_demo"), with_bold=False,
                           with_nwb=False)


def _spearman(a, b) -> float:
    return float(compare(a, b, method="spearman")[0, 0])


def _rel_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-6) -> None:
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def test_round_trip_recovers_ground_truth(study):
    rdms = fmri.rdms_from_betas(study.betas[0], study.design[0], atlas=study.atlas,
                                labels=study.atlas_labels, method="crossnobis")
    assert sorted(rdms) == ["EVC", "IT"]
    assert _spearman(rdms["IT"], study.ground_truth["IT"]) > 0.9
    assert _spearman(rdms["EVC"], study.ground_truth["EVC"]) > 0.8
    assert list(rdms["IT"].pattern_descriptors["stimulus"]) == study.stimulus_ids
    assert rdms["IT"].rdm_descriptors["roi"] == ["IT"]
    assert rdms["IT"].rdm_descriptors["subject"] == ["sub-01"]
    # crossnobis with identity noise estimates the ground truth without bias
    for roi in ("EVC", "IT"):
        est, true = rdms[roi].get_vectors().mean(), study.ground_truth[roi].get_vectors().mean()
        assert abs(est - true) < 0.05 * true


def test_crossnobis_unbiased_for_identical_conditions():
    rng = np.random.default_rng(0)
    n_cond, n_runs, n_vox = 12, 6, 50
    pattern = rng.normal(size=n_vox)  # every condition has this same true pattern
    data = pattern + rng.normal(size=(n_runs * n_cond, 1, 1, n_vox)).reshape(-1, n_vox)
    img = nib.Nifti1Image(data.T.reshape(5, 10, 1, -1), np.eye(4))
    cond = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    rdm = fmri.rdms_from_betas(img, cond, runs, masks=np.ones((5, 10, 1)),
                               method="crossnobis")["mask"]
    d = rdm.get_vectors()[0]
    # zero on average (a biased estimator would sit near 2 * sigma^2 / n_runs-ish > 0.3)
    assert abs(d.mean()) < 3 * d.std() / np.sqrt(d.size) + 0.02
    assert (d < 0).any()  # unbiased distances scatter around zero


@pytest.mark.parametrize("method", ["euclidean", "correlation", "crossnobis"])
def test_equals_nilearn_masker_plus_rsatoolbox(study, method):
    from nilearn.maskers import NiftiMasker

    atlas = nib.load(study.atlas)
    mask_img = nib.Nifti1Image((np.asarray(atlas.dataobj) == 2).astype(np.int8), atlas.affine)
    values = NiftiMasker(mask_img=mask_img, standardize=None).fit_transform(study.betas[0])
    design = pd.read_csv(study.design[0], sep="\t")
    ds = Dataset(values, obs_descriptors={"stimulus": design["condition"].to_numpy(),
                                          "run": design["run"].to_numpy()})
    kwargs = {"cv_descriptor": "run"} if method == "crossnobis" else {}
    expected = calc_rdm(ds, method=method, descriptor="stimulus", **kwargs)
    got = fmri.rdms_from_betas(study.betas[0], study.design[0], atlas=study.atlas,
                               labels={"IT": 2}, method=method)["IT"]
    _rel_close(got.get_vectors(), expected.get_vectors())


def test_shrinkage_noise_equals_rsatoolbox_by_hand(study):
    datasets = fmri.datasets_from_betas(study.betas[0], study.design[0], atlas=study.atlas,
                                        labels={"EVC": 1})
    ds = datasets["EVC"]
    prec = prec_from_measurements(ds, obs_desc="stimulus", method="shrinkage_diag")
    expected = calc_rdm(ds, method="crossnobis", descriptor="stimulus", noise=prec,
                        cv_descriptor="run")
    got = fmri.calc_rdms(datasets, "crossnobis", noise="shrinkage")["EVC"]
    _rel_close(got.get_vectors(), expected.get_vectors())
    by_dict = fmri.calc_rdms(datasets, "mahalanobis", noise={"EVC": prec})["EVC"]
    _rel_close(by_dict.get_vectors(),
               calc_rdm(ds, method="mahalanobis", descriptor="stimulus", noise=prec)
               .get_vectors())


def _tiny(n_vol=6, shape=(3, 3, 2), seed=0):
    data = np.random.default_rng(seed).normal(size=(*shape, n_vol))
    return nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), data


def test_inputs_in_every_form_agree(tmp_path):
    img, data = _tiny(8)
    atlas = np.zeros((3, 3, 2), dtype=np.int16)
    atlas[0] = 1
    atlas[1:, :, 0] = 5
    atlas[1:, :, 1] = 6
    atlas_img = nib.Nifti1Image(atlas, img.affine)
    nib.save(img, tmp_path / "betas.nii.gz")
    nib.save(atlas_img, tmp_path / "atlas.nii.gz")
    pd.DataFrame({"index": [1, 5, 6], "name": ["V1", "IT", "IT"]}).to_csv(
        tmp_path / "labels.tsv", sep="\t", index=False)
    cond = list("abcdabcd")
    runs = [1, 1, 1, 1, 2, 2, 2, 2]
    pd.DataFrame({"condition": cond, "run": runs}).to_csv(tmp_path / "design.tsv", sep="\t",
                                                          index=False)
    vols = []
    for t in range(8):
        nib.save(nib.Nifti1Image(data[..., t], img.affine), tmp_path / f"b{t}.nii")
        vols.append(tmp_path / f"b{t}.nii")
    ref = fmri.datasets_from_betas(img, cond, runs, atlas=atlas_img,
                                   labels={"V1": 1, "IT": [5, 6]})
    nib.save(img, tmp_path / "betas.nii")  # uncompressed: read through a memory map
    variants = [
        fmri.datasets_from_betas(tmp_path / "betas.nii", cond, runs, atlas=atlas,
                                 labels={"V1": 1, "IT": [5, 6]}),
        fmri.datasets_from_betas(tmp_path / "betas.nii.gz", tmp_path / "design.tsv",
                                 atlas=tmp_path / "atlas.nii.gz", labels=tmp_path / "labels.tsv"),
        fmri.datasets_from_betas(vols, cond, runs, atlas=atlas, labels={"V1": 1, "IT": [5, 6]}),
        fmri.datasets_from_betas(img, cond, runs,
                                 masks={"V1": atlas == 1, "IT": atlas_img.__class__(
                                     (atlas >= 5).astype(np.uint8), img.affine)}),
    ]
    for var in variants:
        for roi in ("V1", "IT"):
            np.testing.assert_allclose(var[roi].measurements, ref[roi].measurements, rtol=1e-6)
            assert var[roi].obs_descriptors["run"].tolist() == runs
    np.testing.assert_array_equal(ref["IT"].measurements, data[atlas >= 5].T)
    np.testing.assert_array_equal(variants[0]["IT"].measurements, data[atlas >= 5].T)
    np.testing.assert_array_equal(ref["V1"].channel_descriptors["i"], np.zeros(6))


def test_scaled_integer_file_and_chunking_agree(tmp_path, monkeypatch):
    from data_adapters.fmri import _io

    img, data = _tiny(10)
    ints = np.round(data * 1000).astype(np.int16)
    scaled = nib.Nifti1Image(ints, img.affine)
    scaled.header.set_slope_inter(0.001, 2.0)  # stored ints, real values ints * 0.001 + 2
    nib.save(scaled, tmp_path / "scaled.nii")
    monkeypatch.setattr(_io, "_CHUNK_BYTES", 3 * 18 * 4)  # 3 volumes per chunk: 4 chunks
    got = fmri.datasets_from_betas(tmp_path / "scaled.nii", list("abcdeabcde"),
                                   masks=np.ones((3, 3, 2)))["mask"]
    # nibabel's own scaling of the whole file (float32 slope), and the intended values
    reference = np.asarray(nib.load(tmp_path / "scaled.nii").dataobj).reshape(18, 10).T
    np.testing.assert_array_equal(got.measurements, reference)
    np.testing.assert_allclose(got.measurements, (ints * 0.001 + 2.0).reshape(18, 10).T,
                               atol=1e-6)


def test_nan_and_constant_voxels_are_excluded_with_count():
    img, data = _tiny(6)
    data[0, 0, 0, 3] = np.nan
    data[1, 0, 0, :] = 4.0
    img = nib.Nifti1Image(data, img.affine)
    with pytest.warns(UserWarning, match=r"excluded 2 of 18 voxels \(1 NaN.*1 constant"):
        ds = fmri.datasets_from_betas(img, list("abcabc"), masks=np.ones((3, 3, 2)))["mask"]
    assert ds.n_channel == 16 and np.isfinite(ds.measurements).all()


def test_resample_atlas_with_warning():
    img, data = _tiny(4, shape=(4, 4, 2))
    atlas = np.zeros((4, 4, 2), dtype=np.int16)
    atlas[:2] = 1
    atlas[2:] = 2
    fine = np.repeat(np.repeat(np.repeat(atlas, 2, 0), 2, 1), 2, 2)  # 1 mm grid, same space
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    fine_affine[:3, 3] = -0.5
    fine_img = nib.Nifti1Image(fine, fine_affine)
    with pytest.raises(ValueError, match=r"atlas is not on the grid.*resample=True"):
        fmri.datasets_from_betas(img, list("abab"), atlas=fine_img)
    with pytest.warns(UserWarning, match="nearest-neighbour"):
        got = fmri.datasets_from_betas(img, list("abab"), atlas=fine_img, resample=True)
    np.testing.assert_array_equal(got["2"].measurements, data[atlas == 2].T)


def test_bad_inputs_raise_named_errors():
    img, _ = _tiny(6)
    mask = np.ones((3, 3, 2))
    with pytest.raises(ValueError, match="conditions has 5 labels but the images have 6"):
        fmri.rdms_from_betas(img, list("abcab"), masks=mask)
    with pytest.raises(ValueError, match="runs has 7 labels"):
        fmri.rdms_from_betas(img, list("abcabc"), [1] * 7, masks=mask)
    atlas = np.zeros((3, 3, 2), dtype=np.int16)
    atlas[0] = 1
    with pytest.raises(ValueError, match=r"ROI 'IT': label value\(s\) \[7\] do not occur"):
        fmri.rdms_from_betas(img, list("abcabc"), atlas=atlas, labels={"V1": 1, "IT": 7})
    with pytest.raises(ValueError, match="ROI 'empty' is empty"):
        fmri.rdms_from_betas(img, list("abcabc"), masks={"empty": np.zeros((3, 3, 2))})
    nan_img = nib.Nifti1Image(np.full((3, 3, 2, 6), np.nan), img.affine)
    with pytest.raises(ValueError, match="ROI 'mask' is empty"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fmri.rdms_from_betas(nan_img, list("abcabc"), masks=mask)
    shifted_affine = img.affine.copy()
    shifted_affine[0, 3] += 5.0  # same shape, 5 mm off
    shifted = nib.Nifti1Image(atlas, shifted_affine)
    with pytest.raises(ValueError, match="atlas is not on the grid"):
        fmri.rdms_from_betas(img, list("abcabc"), atlas=shifted, labels={"V1": 1})
    with pytest.raises(ValueError, match="betas must be a 4D image"):
        fmri.rdms_from_betas(nib.Nifti1Image(np.zeros((3, 3, 2)), img.affine), ["a"],
                             masks=mask)
    with pytest.raises(ValueError, match=r"betas\[1\] must be a 3D image"):
        fmri.rdms_from_betas([nib.Nifti1Image(np.zeros((3, 3, 2)), img.affine), img], ["a", "b"],
                             masks=mask)
    with pytest.raises(ValueError, match="crossnobis needs run labels"):
        fmri.rdms_from_betas(img, list("abcabc"), masks=mask, method="crossnobis")
    with pytest.raises(ValueError, match="method='manhattan' is not supported"):
        fmri.rdms_from_betas(img, list("abcabc"), masks=mask, method="manhattan")
    with pytest.raises(ValueError, match=r"noise for ROI 'mask' must be \(18, 18\)"):
        fmri.rdms_from_betas(img, list("abcabc"), [1, 1, 1, 2, 2, 2], masks=mask,
                             method="crossnobis", noise=np.eye(3))
    with pytest.raises(ValueError, match="give an atlas"):
        fmri.rdms_from_betas(img, list("abcabc"))
    with pytest.raises(FileNotFoundError, match="betas: no such file"):
        fmri.rdms_from_betas("/nonexistent/betas.nii", list("abcabc"), masks=mask)


def test_atlas_off_the_data_grid_says_no_voxel_overlaps():
    img, _ = _tiny(6)
    atlas = np.zeros((3, 3, 2), dtype=np.int16)
    atlas[0] = 1
    far = img.affine.copy()
    far[:3, 3] += 100.0  # 100 mm away: nothing overlaps after resampling
    with pytest.raises(ValueError, match="no atlas voxel overlaps the data grid"), \
            warnings.catch_warnings():  # fmt: skip
        warnings.simplefilter("ignore", UserWarning)
        fmri.rdms_from_betas(img, list("abcabc"), atlas=nib.Nifti1Image(atlas, far),
                             labels={"V1": 1}, resample=True)
    with pytest.raises(ValueError, match="atlas has no labelled"):
        fmri.rdms_from_betas(img, list("abcabc"), atlas=np.zeros((3, 3, 2), dtype=np.int16))


def test_rdms_use_brainrdl_engine_without_rsatoolbox_fallback(monkeypatch):
    img, _ = _tiny(6)
    mask = np.ones((3, 3, 2))
    # a broken brainrdl.rsa.rdm must fail loudly, not fall back to rsatoolbox's numbers
    monkeypatch.setitem(sys.modules, "brainrdl.rsa.rdm", None)
    with pytest.raises(ImportError):
        fmri.rdms_from_betas(img, list("abcabc"), masks=mask, method="euclidean")
