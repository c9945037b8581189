"""Ridge encoding against scikit-learn's RidgeCV(alpha_per_target=True) on the same folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainrdl.stats.encoding import (
    kfold_indices,
    ridge_cv_fit_predict,
    ridge_encoding,
    score_predictions,
    split_half_ceiling,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import RidgeCV  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402

ALPHAS = np.logspace(-2, 4, 7)


def _data(n, p, v, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + 2.0
    w = rng.standard_normal((p, v)) * (rng.random((p, v)) < 0.2)
    y = x @ w * rng.uniform(0.05, 2.0, v) + rng.standard_normal((n, v)) * rng.uniform(0.5, 5, v)
    return x, y


@pytest.mark.parametrize("shape", [(40, 120, 30), (80, 10, 25), (30, 29, 12)])
def test_fold_fit_equals_sklearn_ridgecv(shape):
    n, p, v = shape
    x, y = _data(n, p, v, seed=n + p)
    tr, te = np.arange(n) >= n // 4, np.arange(n) < n // 4
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[tr], y[tr])
    pred, best = ridge_cv_fit_predict(torch.tensor(x[tr]), torch.tensor(y[tr]),
                                      torch.tensor(x[te]), ALPHAS, voxel_block=7)
    np.testing.assert_allclose(best.numpy(), ref.alpha_)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[te]), rtol=1e-5, atol=1e-5 * y.std())


@pytest.mark.parametrize("shape", [(60, 200, 40), (90, 20, 40)])
def test_high_leverage_rows_equal_sklearn(shape):
    # outlying stimuli spread the leverages, so the LOO bounds leave several penalties to check
    n, p, v = shape
    x, y = _data(n, p, v, seed=5)
    x[:3] *= 8.0
    alphas = np.logspace(-1, 5, 13)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[10:], y[10:])
    pred, best = ridge_cv_fit_predict(torch.tensor(x[10:]), torch.tensor(y[10:]),
                                      torch.tensor(x[:10]), alphas)
    np.testing.assert_allclose(best.numpy(), ref.alpha_)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[:10]), rtol=1e-5, atol=1e-5 * y.std())


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_forms_agree(form):
    x, y = _data(50, 30, 10, seed=3)
    t = [torch.tensor(a) for a in (x[:40], y[:40], x[40:])]
    pred, best = ridge_cv_fit_predict(*t, ALPHAS, form=form)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[:40], y[:40])
    np.testing.assert_allclose(best.numpy(), ref.alpha_)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[40:]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scoring", ["corr", "r2"])
def test_cross_validated_encoding_equals_sklearn(scoring):
    n, p, v = 60, 90, 20
    x, y = _data(n, p, v, seed=7)
    stratify = np.repeat([0, 1, 2], 20)
    folds = kfold_indices(n, 5, seed=3, stratify=stratify)
    res = ridge_encoding(torch.tensor(x), torch.tensor(y), alphas=ALPHAS, folds=folds,
                         scoring=scoring)
    ref = np.empty_like(y)
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        ref[test] = model.predict(x[test])
        np.testing.assert_allclose(res.alphas[f].numpy(), model.alpha_)
    np.testing.assert_allclose(res.predictions.numpy(), ref, rtol=1e-5, atol=1e-5 * y.std())
    if scoring == "r2":
        expected = r2_score(y, ref, multioutput="raw_values")
    else:
        expected = [np.corrcoef(ref[:, j], y[:, j])[0, 1] for j in range(v)]
    np.testing.assert_allclose(res.scores.numpy(), expected, atol=1e-6)
    assert res.score == pytest.approx(float(np.mean(expected)), abs=1e-6)


def test_gcv_close_to_loo_and_fast_path_runs():
    x, y = _data(60, 200, 15, seed=11)
    loo = ridge_encoding(torch.tensor(x), torch.tensor(y), alphas=ALPHAS, cv="loo")
    gcv = ridge_encoding(torch.tensor(x), torch.tensor(y), alphas=ALPHAS, cv="gcv")
    assert abs(loo.score - gcv.score) < 0.1


def test_folds_stratified_and_seeded():
    labels = np.repeat(np.arange(4), 10)
    folds = kfold_indices(40, 5, seed=1, stratify=labels)
    for f in folds:
        assert np.bincount(labels[f], minlength=4).tolist() == [2, 2, 2, 2]
    assert [f.tolist() for f in kfold_indices(40, 5, seed=1)] == [
        f.tolist() for f in kfold_indices(40, 5, seed=1)]
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(40))


def test_weighted_scores_equal_expanded_data():
    rng = np.random.default_rng(0)
    pred, obs = rng.standard_normal((12, 3)), rng.standard_normal((12, 3))
    counts = rng.integers(0, 3, size=(2, 12)).astype(float)
    for scoring in ("corr", "r2"):
        got = score_predictions(torch.tensor(pred), torch.tensor(obs), scoring,
                                torch.tensor(counts))
        for b in range(2):
            rep = np.repeat(np.arange(12), counts[b].astype(int))
            ref = score_predictions(torch.tensor(pred[rep]), torch.tensor(obs[rep]), scoring)
            np.testing.assert_allclose(got[b].numpy(), ref.numpy(), atol=1e-10)


def test_split_half_ceiling_spearman_brown():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((200, 1))
    h1 = signal + rng.standard_normal((200, 1))
    h2 = signal + rng.standard_normal((200, 1))
    r = np.corrcoef(h1[:, 0], h2[:, 0])[0, 1]
    c = split_half_ceiling(torch.tensor(h1), torch.tensor(h2), "r2")
    assert float(c[0]) == pytest.approx(2 * r / (1 + r))


def test_encoding_errors():
    with pytest.raises(ValueError, match="alphas"):
        ridge_encoding(torch.randn(10, 2), torch.randn(10, 2), alphas=[0.0])
    with pytest.raises(ValueError, match="same stimuli"):
        ridge_encoding(torch.randn(10, 2), torch.randn(9, 2))
    with pytest.raises(ValueError, match="folds"):
        ridge_encoding(torch.randn(10, 2), torch.randn(10, 2), folds=[[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="NaN"):
        ridge_encoding(torch.full((10, 2), float("nan")), torch.randn(10, 2))
    y = torch.randn(10, 2, dtype=torch.float64)
    y[3, 1] = float("inf")
    with pytest.raises(ValueError, match="y holds NaN or infinite"):
        ridge_encoding(torch.randn(10, 2, dtype=torch.float64), y)
    # huge finite values whose sum overflows are accepted
    x = torch.randn(10, 2, dtype=torch.float64)
    x[:, 0] = 1e308
    assert ridge_encoding(x, torch.randn(10, 2, dtype=torch.float64)).predictions.shape == (10, 2)


@pytest.mark.gpu
def test_encoding_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, y = _data(80, 300, 50, seed=5)
    cpu = ridge_encoding(torch.tensor(x), torch.tensor(y), alphas=ALPHAS)
    gpu = ridge_encoding(torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda"),
                         alphas=ALPHAS)
    np.testing.assert_allclose(gpu.predictions.cpu().numpy(), cpu.predictions.numpy(),
                               rtol=1e-6, atol=1e-6 * y.std())


def _exact_loo_errors(x, y, alphas):
    """LOO mean squared errors (A, v) in float64 from the hat matrix, by definition."""
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    out = []
    for a in alphas:
        h = xc @ np.linalg.solve(xc.T @ xc + a * np.eye(x.shape[1]), xc.T) + 1.0 / n
        r = yc - h @ yc
        out.append(((r / (1.0 - np.diag(h))[:, None]) ** 2).mean(0))
    return np.array(out)


def test_near_tied_penalties_equal_sklearn():
    # penalties far below the feature spectrum give LOO errors within ~1e-8..1e-6 relative of
    # each other: the float32 screen cannot separate them, the float64 errors decide
    x, y = _data(50, 120, 30, seed=13)
    alphas = np.concatenate([np.logspace(-5, -3, 5), [1e2, 1e4]])
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[10:], y[10:])
    pred, best = ridge_cv_fit_predict(torch.tensor(x[10:]), torch.tensor(y[10:]),
                                      torch.tensor(x[:10]), alphas)
    assert len(np.unique(ref.alpha_)) > 1
    np.testing.assert_allclose(best.numpy(), ref.alpha_)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[:10]), rtol=1e-5, atol=1e-5 * y.std())


def _hat(x, a):
    xc = x - x.mean(0)
    return xc @ np.linalg.solve(xc.T @ xc + a * np.eye(x.shape[1]), xc.T) + 1.0 / x.shape[0]


def _loo(h, y):
    r = y - h @ y
    return ((r / (1.0 - np.diag(h))[:, None]) ** 2).mean(0)


def test_engineered_near_ties_follow_float64():
    # voxels y = signal + t * noise with t tuned (bisection) so that the LOO errors of two
    # distant penalties differ by ±3e-8 relative: different residuals, so float32 rounding
    # (~1e-7 here) would order them at random; the screen must defer to float64
    rng = np.random.default_rng(23)
    n, p = 40, 100
    x = rng.standard_normal((n, p))
    alphas = np.array([1e-1, 1e4])
    h1, h2 = _hat(x, alphas[0]), _hat(x, alphas[1])
    cols = []
    while len(cols) < 16:
        signal = x @ rng.standard_normal(p)
        noise = rng.standard_normal(n) * signal.std()
        target = 3e-8 if len(cols) % 2 else -3e-8

        def gap(t, signal=signal, noise=noise, target=target):
            y = (signal + t * noise)[:, None]
            e1, e2 = _loo(h1, y)[0], _loo(h2, y)[0]
            return (e1 - e2) / e2 - target

        lo, hi = 0.0, 100.0
        if not gap(lo) < 0 < gap(hi):  # this draw has no crossing: draw again
            continue
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
        cols.append(signal + hi * noise)
    y = np.stack(cols, 1)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x, y)
    assert len(np.unique(ref.alpha_)) == 2
    _, best = ridge_cv_fit_predict(torch.tensor(x), torch.tensor(y), torch.tensor(x[:3]), alphas)
    np.testing.assert_array_equal(best.numpy(), ref.alpha_)


def _spectral_terms(x, y, alphas):
    """Eigenvalues s² and eigenvectors u of the centred Gram (its null direction dropped), the
    centred responses, the shrink factors α / (s² + α) per penalty and the LOO denominators
    Σ_k shrink_k u_ik²."""
    xc, yc = x - x.mean(0), torch.tensor(y - y.mean(0))
    s2, u = np.linalg.eigh(xc @ xc.T)
    s2, u = torch.tensor(s2[1:]), torch.tensor(u[:, 1:])  # drop the null direction of centring
    a = torch.tensor(alphas)
    shrinks = a[:, None] / (s2[None, :] + a[:, None])
    return s2, u, yc, shrinks, shrinks @ (u * u).T


def test_float32_screen_keeps_the_best_and_prunes():
    from brainrdl.stats import encoding as enc

    n, p, v = 60, 150, 40
    x, y = _data(n, p, v, seed=17)
    alphas = np.logspace(-2, 6, 9)
    exact = _exact_loo_errors(x, y, alphas)
    _, u, yc, shrinks, denoms = _spectral_terms(x, y, alphas)
    z = u.T @ yc
    ss = (shrinks * shrinks) @ (z * z)
    hi = torch.full_like(ss, float("inf"))
    todo = torch.ones_like(ss, dtype=torch.bool)
    lo = torch.zeros_like(ss)
    kept = enc._screen_float32(ss, z, shrinks, denoms, enc._LooFactors(u, denoms), todo, lo, hi,
                               n)
    best = exact.argmin(0)
    assert kept[best, np.arange(v)].all()  # the exact best penalty is never screened out
    srt = np.sort(exact, 0)
    separated = (srt[1] - srt[0]) / srt[0] > 1e-2
    assert separated.any()
    # well-separated voxels keep their best penalty only
    assert (kept.sum(0).numpy()[separated] == 1).all()
    # a penalty is dropped only if its error exceeds the best one's by more than the bound
    dropped = ~kept.numpy()
    assert (exact[dropped] > np.broadcast_to(srt[0], exact.shape)[dropped]).all()


def test_shared_gram_path_with_offset_features_equals_sklearn():
    # dual form in every fold: one Gram of all stimuli, re-centred per fold; a large common
    # offset of the features must not cost digits
    n, p, v = 45, 80, 12
    x, y = _data(n, p, v, seed=29)
    x = x + 1e3
    folds = kfold_indices(n, 3, seed=2)
    res = ridge_encoding(torch.tensor(x), torch.tensor(y), alphas=ALPHAS, folds=folds)
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        np.testing.assert_allclose(res.alphas[f].numpy(), model.alpha_)
        np.testing.assert_allclose(res.predictions[test].numpy(), model.predict(x[test]),
                                   rtol=1e-5, atol=1e-5 * y.std())
    direct = ridge_cv_fit_predict(torch.tensor(x[train]), torch.tensor(y[train]),
                                  torch.tensor(x[test]), ALPHAS)[0]
    np.testing.assert_allclose(res.predictions[test].numpy(), direct.numpy(), rtol=1e-9,
                               atol=1e-9 * y.std())


def test_nearby_penalty_intervals_hold_the_exact_errors():
    from brainrdl.stats import encoding as enc

    n, p, v = 60, 150, 6
    x, y = _data(n, p, v, seed=19)
    alphas = np.logspace(-3, 6, 10)
    exact = _exact_loo_errors(x, y, alphas)
    s2, u, yc, shrinks, denoms = _spectral_terms(x, y, alphas)
    cross = torch.einsum("ak,bk,kv->abv", shrinks, shrinks, (u.T @ yc) ** 2)
    for i in range(len(alphas)):
        for j in (i - 1, i + 1):
            if not 0 <= j < len(alphas):
                continue
            e_j = torch.tensor(exact[j])
            lo, hi = enc._nearby_interval(i, j, e_j, e_j, cross, shrinks, denoms, 1e-13, n)
            assert (lo.numpy() <= exact[i]).all() and (exact[i] <= hi.numpy()).all()
            if alphas[max(i, j)] < 1e-3 * float(s2.min()):  # far below the spectrum: tight
                assert (hi.numpy() / lo.numpy() < 1.01).all()
            # wider from a wider interval of the reference
            lo2, hi2 = enc._nearby_interval(i, j, 0.9 * e_j, 1.1 * e_j, cross, shrinks, denoms,
                                            1e-13, n)
            assert (lo2 <= lo).all() and (hi2 >= hi).all()
