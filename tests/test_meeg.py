"""MEG / EEG epochs → time-resolved RDMs: planted structure, rsatoolbox references, named errors."""

from __future__ import annotations

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from data_adapters.meeg import rdms_from_epochs, read_epochs_data  # noqa: E402

SFREQ = 100.0
WINDOW = (0.10, 0.20)  # where the condition structure is planted


def _epochs(seed=0, n_rep=10, meg_only_signal=False, amp=0.8):
    """6 conditions in two groups of 3, visible only in WINDOW; mag, grad and EEG sensors."""
    rng = np.random.default_rng(seed)
    types = ["mag"] * 6 + ["grad"] * 6 + ["eeg"] * 8
    unit = np.array([{"mag": 50e-15, "grad": 5e-12, "eeg": 5e-6}[t] for t in types])
    times = np.arange(-10, 41) / SFREQ
    group = np.array([0, 0, 0, 1, 1, 1])
    pattern = rng.standard_normal((2, len(types)))[group] + 0.2 * rng.standard_normal(
        (6, len(types)))
    pattern -= pattern.mean(0)
    if meg_only_signal:
        pattern[:, 12:] = 0.0
    inside = (times >= WINDOW[0]) & (times < WINDOW[1])
    cond = rng.permutation(np.repeat(np.arange(6), n_rep))
    data = rng.standard_normal((cond.size, len(types), times.size))
    data += amp * pattern[cond][:, :, None] * inside[None, None, :]
    if meg_only_signal:
        unit[12:] *= 1e3  # EEG far larger than anything else, and pure noise
    info = mne.create_info([f"C{i:02d}" for i in range(len(types))], SFREQ, types)
    events = np.column_stack([np.arange(cond.size) * 100, np.zeros(cond.size, int), cond + 1])
    event_id = {f"c{i}": i + 1 for i in range(6)}
    model = (group[:, None] != group[None, :]).astype(float)[np.triu_indices(6, 1)]
    return mne.EpochsArray(data * unit[None, :, None], info, events=events, tmin=times[0],
                           event_id=event_id, verbose="error"), model


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_planted_structure_recovered_from_fif_only_in_its_window(tmp_path):
    epochs, model = _epochs()
    path = tmp_path / "sub-01-epo.fif"
    epochs.save(path, verbose="error")  # MNE's writer
    rdms = rdms_from_epochs(path, window=0.05)
    t = np.array(rdms.rdm_descriptors["time"])
    assert rdms.dissimilarity_measure == "crossnobis" and rdms.n_cond == 6
    assert rdms.pattern_descriptors["conds"] == [f"c{i}" for i in range(6)]
    np.testing.assert_allclose(t, np.arange(-0.075, 0.4, 0.05), atol=1e-9)
    d = rdms.dissimilarities
    inside = (t > WINDOW[0]) & (t < WINDOW[1])
    outside = ~inside
    assert inside.sum() == 2
    for k in np.flatnonzero(inside):
        assert _corr(d[k], model) > 0.8
        assert d[k].mean() > 0.5
    # crossnobis is unbiased: noise-only windows scatter around zero, far below the signal
    assert abs(d[outside].mean()) < 0.05 * d[inside].mean()
    assert np.abs(d[outside].mean(axis=1)).max() < 0.2 * d[inside].mean()
    assert rdms.rdm_descriptors["window"][0] == "[-0.1, -0.05)"


def test_matches_rsatoolbox_movie_for_plain_distances():
    from rsatoolbox.io.mne import dataset_from_epochs
    from rsatoolbox.rdm import calc_rdm_movie

    epochs, _ = _epochs(seed=1, n_rep=4)
    tds = dataset_from_epochs(epochs)
    codes = epochs.events[:, 2]
    for method in ("euclidean", "correlation"):
        ours = rdms_from_epochs(epochs, conditions=codes, method=method, scale=None)
        ref = calc_rdm_movie(tds, method=method, descriptor="event")
        np.testing.assert_allclose(ours.dissimilarities, ref.dissimilarities, rtol=1e-7)
        np.testing.assert_allclose(ours.rdm_descriptors["time"], ref.rdm_descriptors["time"])


# rsatoolbox's reference averaging casts NaN into the integer fold descriptor (harmless)
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_crossnobis_per_time_point_noise_matches_rsatoolbox():
    from rsatoolbox.data import Dataset
    from rsatoolbox.data.noise import prec_from_residuals
    from rsatoolbox.rdm import calc_rdm

    epochs, _ = _epochs(seed=2, n_rep=5)
    ours = rdms_from_epochs(epochs, times=(0.1, 0.13))
    data = read_epochs_data(epochs, times=(0.1, 0.13))
    labels = data.conditions
    fold = np.zeros(len(labels), int)
    for c in np.unique(labels):
        fold[labels == c] = np.arange((labels == c).sum())
    for k in range(data.data.shape[2]):
        x = data.data[:, :, k]
        means = {c: x[labels == c].mean(0) for c in np.unique(labels)}
        resid = x - np.array([means[c] for c in labels])
        prec = prec_from_residuals(resid, dof=len(labels) - 6)
        ds = Dataset(x, obs_descriptors={"conds": labels, "fold": fold})
        ref = calc_rdm(ds, method="crossnobis", descriptor="conds", noise=prec,
                       cv_descriptor="fold")
        np.testing.assert_allclose(ours.dissimilarities[k], ref.dissimilarities[0], rtol=1e-6)
    # per-time-point noise differs from one pooled precision
    pooled = rdms_from_epochs(epochs, times=(0.1, 0.13), noise="pooled")
    assert not np.allclose(pooled.dissimilarities, ours.dissimilarities)


def test_channel_types_are_put_on_one_footing():
    """Structure only in MEG, EEG channels huge and pure noise: unscaled euclidean distances are
    EEG noise; scaling each type by its noise SD recovers the MEG structure."""
    epochs, model = _epochs(seed=3, meg_only_signal=True, amp=1.5)
    kw = {"times": (0.1, 0.19), "window": 0.1, "method": "euclidean"}
    raw = rdms_from_epochs(epochs, scale=None, **kw).dissimilarities[0]
    scaled = rdms_from_epochs(epochs, **kw).dissimilarities[0]
    assert _corr(scaled, model) > 0.8
    assert _corr(raw, model) < 0.5
    data = read_epochs_data(epochs, times=(0.1, 0.19))
    assert set(data.scales) == {"mag", "grad", "eeg"}
    assert data.scales["eeg"] / data.scales["mag"] > 1e10  # noise SD in each unit
    # after scaling, every channel type has unit residual variance
    from data_adapters.meeg.epochs import _residuals

    resid = _residuals(data.data, data.conditions)
    for kind in ("mag", "grad", "eeg"):
        rows = np.array([c == kind for c in data.ch_types])
        assert np.sqrt(np.mean(resid[:, rows] ** 2)) == pytest.approx(1.0)


def test_metadata_conditions_picks_and_folds():
    epochs, _ = _epochs(seed=4, n_rep=6)
    import pandas as pd

    epochs.metadata = pd.DataFrame({"group": np.where(epochs.events[:, 2] <= 3, "A", "B")})
    rdms = rdms_from_epochs(epochs, conditions="group", window=0.1, picks="meg", n_folds=3)
    assert rdms.n_cond == 2 and rdms.descriptors["channel_types"] == ["grad", "mag"]
    assert rdms.descriptors["n_channels"] == 12


def test_named_errors(tmp_path):
    epochs, _ = _epochs(seed=5, n_rep=3)
    with pytest.raises(FileNotFoundError, match="nope-epo"):
        rdms_from_epochs(tmp_path / "nope-epo.fif")
    bad = tmp_path / "bad-epo.fif"
    bad.write_bytes(b"not a fif file")
    with pytest.raises(ValueError, match="bad-epo"):
        rdms_from_epochs(bad)
    txt = tmp_path / "x.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match=r"not a \.fif file"):
        rdms_from_epochs(txt)
    with pytest.raises(TypeError, match=r"mne\.Epochs"):
        rdms_from_epochs(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="metadata"):
        rdms_from_epochs(epochs, conditions="stimulus")
    with pytest.raises(ValueError, match="n_folds"):
        rdms_from_epochs(epochs, n_folds=4)
    with pytest.raises(ValueError, match="method"):
        rdms_from_epochs(epochs, method="poisson")
    with pytest.raises(ValueError, match="holds no sample"):
        rdms_from_epochs(epochs, times=(1.0, 2.0))
    with pytest.raises(ValueError, match="noise"):
        rdms_from_epochs(epochs, noise=np.eye(3))
    with pytest.raises(ValueError, match="step"):
        rdms_from_epochs(epochs, step=0.1)


def test_subject_and_stimulus_descriptors():
    epochs, _ = _epochs(seed=6, n_rep=3)
    rdms = rdms_from_epochs(epochs, window=0.2, subject="sub-07")
    assert rdms.rdm_descriptors["subject"] == ["sub-07"] * rdms.n_rdm
    assert rdms.pattern_descriptors["stimulus"] == rdms.pattern_descriptors["conds"]
