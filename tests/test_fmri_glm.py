"""fMRI adapter on BOLD runs + events: GLM betas, residual precision, crossnobis, bad inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import make_first_level_design_matrix
from rsatoolbox.data.noise import prec_from_residuals
from rsatoolbox.rdm import calc_rdm, compare

from data_adapters import fmri

T_R = 2.0
N_SCANS = 60
SHAPE = (3, 3, 2)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _events(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = rng.permutation(np.repeat(["a", "b", "c"], 4))
    return pd.DataFrame({"onset": 6.0 + 8.0 * np.arange(12), "duration": 1.0,
                         "trial_type": kinds})


def _run(seed: int) -> tuple[nib.Nifti1Image, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    events = _events(seed)
    frame_times = np.arange(N_SCANS) * T_R
    x = make_first_level_design_matrix(frame_times, events, drift_model=None)[["a", "b", "c"]]
    patterns = np.array([[1.0] * 18, [0.0] * 18, [-1.0] * 18]) + rng.normal(size=(3, 18))
    y = 50 + x.to_numpy() @ patterns + 0.3 * rng.normal(size=(N_SCANS, 18))
    return nib.Nifti1Image(y.T.reshape(*SHAPE, N_SCANS), AFFINE), events


@pytest.fixture(scope="module")
def runs():
    return [_run(s) for s in (1, 2, 3)]


MASKS = {"left": np.arange(18).reshape(SHAPE) < 9, "right": np.arange(18).reshape(SHAPE) >= 9}


def test_betas_and_residuals_equal_least_squares_by_hand(runs):
    res = fmri.first_level_glm([r[0] for r in runs], [r[1] for r in runs], t_r=T_R, masks=MASKS)
    assert res.conditions.tolist() == ["a", "b", "c"] * 3
    assert res.runs.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    dof = 0
    betas, resid = [], []
    for img, events in runs:
        x = make_first_level_design_matrix(np.arange(N_SCANS) * T_R, events)
        y = np.asarray(img.dataobj).reshape(18, N_SCANS).T[:, :9]
        coef, *_ = np.linalg.lstsq(x.to_numpy(), y, rcond=None)
        betas.append(coef[[x.columns.get_loc(c) for c in "abc"]])
        resid.append(y - x.to_numpy() @ coef)
        dof += N_SCANS - x.shape[1]
    np.testing.assert_allclose(res.betas["left"], np.concatenate(betas), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.residuals["left"], np.concatenate(resid), atol=1e-8)
    assert res.dof == dof
    np.testing.assert_array_equal(res.voxels["right"][0], np.unravel_index(9, SHAPE))


def test_betas_equal_nilearn_first_level_model(runs):
    from nilearn.glm.first_level import FirstLevelModel

    img, events = runs[0]
    mask = nib.Nifti1Image(MASKS["left"].astype(np.int8), AFFINE)
    model = FirstLevelModel(t_r=T_R, mask_img=mask, signal_scaling=False, noise_model="ols",
                            minimize_memory=True).fit(img, events)
    effect = model.compute_contrast("b", output_type="effect_size")
    expected = np.asarray(effect.dataobj)[MASKS["left"]]
    res = fmri.first_level_glm(img, events, t_r=T_R, masks={"left": MASKS["left"]})
    np.testing.assert_allclose(res.betas["left"][1], expected, rtol=1e-6, atol=1e-9)


def test_crossnobis_equals_rsatoolbox_with_residual_precision(runs):
    bold, events = [r[0] for r in runs], [r[1] for r in runs]
    datasets, precisions = fmri.datasets_from_bold(bold, events, t_r=T_R, masks=MASKS)
    res = fmri.first_level_glm(bold, events, t_r=T_R, masks=MASKS)
    prec = prec_from_residuals(res.residuals["right"], dof=res.dof, method="shrinkage_diag")
    np.testing.assert_allclose(precisions["right"], prec, rtol=1e-10)
    expected = calc_rdm(datasets["right"], method="crossnobis", descriptor="stimulus",
                        noise=prec, cv_descriptor="run")
    got = fmri.rdms_from_bold(bold, events, t_r=T_R, masks=MASKS)["right"]
    assert got.dissimilarity_measure == "crossnobis"
    d_got, d_exp = got.get_vectors(), expected.get_vectors()
    assert np.abs(d_got - d_exp).max() <= 1e-6 * np.abs(d_exp).max()
    # a and c differ most (patterns +1 and -1 around b)
    square = got.get_matrices()[0]
    assert square[0, 2] > max(square[0, 1], square[1, 2])


def test_confounds_enter_the_design(runs):
    img, events = runs[0]
    conf = pd.DataFrame({"motion": np.random.default_rng(9).normal(size=N_SCANS)})
    res = fmri.first_level_glm(img, events, t_r=T_R, masks=MASKS, confounds=[conf])
    x = make_first_level_design_matrix(np.arange(N_SCANS) * T_R, events,
                                       add_regs=conf.to_numpy(), add_reg_names=["motion"])
    y = np.asarray(img.dataobj).reshape(18, N_SCANS).T[:, :9]
    coef, *_ = np.linalg.lstsq(x.to_numpy(), y, rcond=None)
    np.testing.assert_allclose(res.betas["left"][0], coef[x.columns.get_loc("a")], rtol=1e-6)
    assert res.dof == N_SCANS - x.shape[1]


def test_bad_inputs_raise_named_errors(runs, tmp_path):
    img, events = runs[0]
    no_type = tmp_path / "events.tsv"
    events.drop(columns="trial_type").to_csv(no_type, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"lacks the BIDS column\(s\) \['trial_type'\]"):
        fmri.rdms_from_bold(img, no_type, t_r=T_R, masks=MASKS)
    with pytest.raises(ValueError, match="bold has 2 runs but events has 1"):
        fmri.first_level_glm([img, img], [events], t_r=T_R, masks=MASKS)
    with pytest.raises(ValueError, match=r"bold\[0\] must be a 4D image"):
        fmri.first_level_glm(nib.Nifti1Image(np.zeros(SHAPE), AFFINE), events, t_r=T_R,
                             masks=MASKS)
    with pytest.raises(ValueError, match=r"confounds\[0\] has 5 rows"):
        fmri.first_level_glm(img, events, t_r=T_R, masks=MASKS, confounds=np.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"events\[1\] lacks condition\(s\) \['c'\]"):
        fmri.first_level_glm([img, img], [events, events[events.trial_type != "c"]], t_r=T_R,
                             masks=MASKS)
    with pytest.raises(ValueError, match="noise_model='ar2'"):
        fmri.first_level_glm(img, events, t_r=T_R, masks=MASKS, noise_model="ar2")
    with pytest.raises(ValueError, match=r"t_r=0\.0 is out of range"):
        fmri.first_level_glm(img, events, t_r=0, masks=MASKS)
    bad_onset = events.assign(onset="soon")
    with pytest.raises(ValueError, match="column 'onset' must be numeric"):
        fmri.read_events(bad_onset)


@pytest.mark.slow
def test_demo_bold_round_trip(tmp_path):
    from data_adapters.demo import make_demo_study

    s = make_demo_study(tmp_path, with_nwb=False)
    rdms = fmri.rdms_from_bold(s.bold, s.events, t_r=s.t_r, atlas=s.atlas, labels=s.labels)
    assert compare(rdms["IT"], s.ground_truth["IT"], method="spearman")[0, 0] > 0.8
    ident = fmri.rdms_from_bold(s.bold, s.events, t_r=s.t_r, atlas=s.atlas, labels=s.labels,
                                noise=None)
    # identity-noise crossnobis on GLM betas is unbiased for the ground truth scale
    est, true = ident["IT"].get_vectors().mean(), s.ground_truth["IT"].get_vectors().mean()
    assert abs(est - true) < 0.1 * true


@pytest.mark.parametrize("dof", [None, 20])
def test_fast_shrinkage_precision_equals_rsatoolbox(dof):
    rng = np.random.default_rng(5)
    resid = rng.normal(size=(30, 12)) @ rng.normal(size=(12, 12)) + 3.0
    got = fmri.precision_from_residuals(resid, dof=dof)
    expected = prec_from_residuals(resid, dof=dof, method="shrinkage_diag")
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)
    diag = fmri.precision_from_residuals(resid, dof=dof, method="diag")
    np.testing.assert_allclose(diag, prec_from_residuals(resid, dof=dof, method="diag"))
    with pytest.raises(ValueError, match="residuals must be 2D"):
        fmri.precision_from_residuals(resid[0])
