"""Properties of CKA, ridge encoding and the Procrustes distance that reference tests leave open.

Written to kill mutants that survived the suite (docs/mutation-testing.md). Each test states what
any correct implementation must do — equal a literal NumPy CKA (Kornblith et al. 2019; the
unbiased HSIC of Song et al. 2012), scikit-learn's ``RidgeCV`` / ``Ridge`` fold by fold,
``scipy.linalg.orthogonal_procrustes`` — or an invariance or boundary of the definition; never a
snapshot of today's output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from brainrdl.stats.cka import cka, cka_from_grams, hsic_terms
from brainrdl.stats.encoding import (
    kfold_indices,
    ridge_cv_fit_predict,
    ridge_encoding,
    score_predictions,
    split_half_ceiling,
)
from brainrdl.stats.procrustes import (
    partial_whiten,
    procrustes_distance,
    procrustes_similarity,
    shape_factor,
)

# --------------------------------------------------------------------------- CKA references


def _centring(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def _hsic(k: np.ndarray, lg: np.ndarray) -> float:
    """Biased HSIC, tr(K H L H) (without the 1 / (n - 1)² factor that cancels in CKA)."""
    h = _centring(k.shape[0])
    return float(np.trace(k @ h @ lg @ h))


def _hsic_unbiased(k: np.ndarray, lg: np.ndarray) -> float:
    """Song et al. (2012), written out with zero-diagonal Grams (the 1 / (n (n - 3)) cancels)."""
    n = k.shape[0]
    kt, lt = k.copy(), lg.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    return float(np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
                 - 2.0 / (n - 2) * one @ kt @ lt @ one)


def _cka_reference(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    """Linear CKA of Kornblith et al. (2019): HSIC of the Grams of the centred patterns."""
    x, y = x - x.mean(0), y - y.mean(0)
    k, lg = x @ x.T, y @ y.T
    f = _hsic_unbiased if debiased else _hsic
    return f(k, lg) / math.sqrt(f(k, k) * f(lg, lg))


def _patterns(n: int, p: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Related patterns with large offsets (so a missing or wrong centring shows)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) + rng.uniform(2.0, 5.0, size=p)
    y = x[:, :1] @ rng.standard_normal((1, q)) + rng.standard_normal((n, q)) - 3.0
    return x, y


# --------------------------------------------------------------------------- CKA


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize(
    "shape",
    [(20, 3, 4),  # narrow: p × q cross-products
     (8, 30, 50),  # wide: n × n Grams
     (6, 2, 40)],  # wide on one side only
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cka_equals_the_literal_numpy_definition(debiased, shape, dtype):
    n, p, q = shape
    x, y = _patterns(n, p, q, seed=sum(shape))
    got = cka(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype), debiased=debiased)
    assert got.dtype == dtype and got.shape == ()
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    assert float(got) == pytest.approx(_cka_reference(x, y, debiased), abs=tol)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_at_exactly_four_stimuli_and_the_path_boundary(debiased):
    """n = 4 is the smallest debiased case; p q + p² + q² = 3 n² is the last narrow shape."""
    x, y = _patterns(4, 4, 4, seed=1)  # 16 + 16 + 16 = 3 · 16
    got = cka(torch.tensor(x), torch.tensor(y), debiased=debiased)
    assert float(got) == pytest.approx(_cka_reference(x, y, debiased), abs=1e-10)


def test_debiased_cka_refuses_three_stimuli():
    x, y = _patterns(3, 2, 2, seed=2)
    with pytest.raises(ValueError, match="at least 4 stimuli; got 3"):
        cka(torch.tensor(x), torch.tensor(y), debiased=True)
    # the plain form is defined for three
    assert float(cka(torch.tensor(x), torch.tensor(y))) == pytest.approx(_cka_reference(x, y))


@pytest.mark.parametrize("shape", [(10, 3, 2), (5, 20, 30)])
def test_cka_batches_broadcast_over_leading_dimensions(shape):
    n, p, q = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, n, p)) + 1.0
    y = rng.standard_normal((3, n, q))
    for debiased in (False, True):
        got = cka(torch.tensor(x), torch.tensor(y), debiased=debiased)
        assert got.shape == (2, 3)
        for i in range(2):
            for j in range(3):
                ref = _cka_reference(x[i, j], y[j], debiased)
                assert float(got[i, j]) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("shape", [(12, 3, 4), (6, 20, 30)])
def test_cka_gradient_path_equals_the_plain_one(shape):
    """With autograd the Gram is a torch product instead of NumPy's: the same value, and the
    gradient is the finite-difference one."""
    x, y = _patterns(*shape, seed=4)
    xt = torch.tensor(x, requires_grad=True)
    got = cka(xt, torch.tensor(y))
    assert float(got.detach()) == pytest.approx(_cka_reference(x, y), abs=1e-10)
    got.backward()
    eps, (i, j) = 1e-6, (1, 2)
    xp, xm = x.copy(), x.copy()
    xp[i, j] += eps
    xm[i, j] -= eps
    fd = (_cka_reference(xp, y) - _cka_reference(xm, y)) / (2 * eps)
    assert float(xt.grad[i, j]) == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_cka_of_mixed_and_integer_dtypes():
    x, y = _patterns(9, 3, 2, seed=5)
    xi, yi = np.round(x * 3).astype(np.int64), np.round(y * 3).astype(np.int64)
    # integer patterns are counted in float64
    got = cka(torch.tensor(xi), torch.tensor(yi))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_cka_reference(xi.astype(float), yi.astype(float)),
                                       abs=1e-12)
    assert cka(torch.tensor(xi), torch.tensor(y)).dtype == torch.float64
    assert cka(torch.tensor(x), torch.tensor(yi)).dtype == torch.float64
    # float32 with float64 promotes either way round
    assert cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y)).dtype == torch.float64
    assert cka(torch.tensor(x), torch.tensor(y, dtype=torch.float32)).dtype == torch.float64


@pytest.mark.parametrize(("fn", "rows_message"), [
    pytest.param(lambda x, y: cka(x, y), "same stimuli", id="cka"),
    pytest.param(lambda x, y: procrustes_distance(x, y), "got 5 and 6 rows", id="procrustes"),
])
def test_pattern_metric_messages_name_the_argument(fn, rows_message):
    good = torch.randn(5, 2)
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor"):
        fn(np.ones((5, 2)), good)
    with pytest.raises(TypeError, match=r"^y must be a torch\.Tensor"):
        fn(good, np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"^x must have shape"):
        fn(torch.ones(5), good)
    with pytest.raises(ValueError, match=r"^y must have shape"):
        fn(good, torch.ones(5))
    with pytest.raises(ValueError, match=rows_message):
        fn(good, torch.randn(6, 2))


@pytest.mark.parametrize("debiased", [False, True])
def test_hsic_terms_equal_the_literal_estimators(debiased):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((7, 3)) + 2.0, rng.standard_normal((7, 5))
    k, lg = a @ a.T, np.exp(-((b[:, None] - b[None]) ** 2).sum(-1) / 10)  # linear and RBF
    got = float(hsic_terms(torch.tensor(k), torch.tensor(lg), debiased))
    ref = _hsic_unbiased(k, lg) if debiased else _hsic(k, lg)
    assert got == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_from_grams_equals_cka_of_the_patterns_and_is_batched(debiased):
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((2, 8, 3)) + 4.0, rng.standard_normal((2, 8, 6)) - 1.0
    k = torch.tensor(x @ x.transpose(0, 2, 1))
    lg = torch.tensor(y @ y.transpose(0, 2, 1))
    got = cka_from_grams(k, lg, debiased)
    assert got.shape == (2,)
    for i in range(2):
        assert float(got[i]) == pytest.approx(_cka_reference(x[i], y[i], debiased), abs=1e-10)


# --------------------------------------------------------------------------- Procrustes references


def _whiten_reference(x: np.ndarray, alpha: float, eig_tol: float = 1e-7) -> np.ndarray:
    """netrep's whiten(X, alpha, preserve_variance=True, eigval_tol), written out: the new
    variance Σ (α² λ + 2 α (1 - α) √λ + (1 - α)²) over the floored eigenvalues is scaled back to
    Σ λ (the total variance when no eigenvalue is floored)."""
    lam, v = np.linalg.eigh(x.T @ x)
    lam = np.maximum(lam, eig_tol)
    d = alpha + (1.0 - alpha) * lam ** -0.5
    new_var = np.sum(alpha**2 * lam + 2 * alpha * (1 - alpha) * lam**0.5 + (1 - alpha) ** 2)
    d = d * np.sqrt(lam.sum() / new_var)
    return x @ ((v * d[None, :]) @ v.T)


def _procrustes_reference(x, y, alpha=1.0, centre=True) -> float:
    """Centre, whiten, unit-normalise, zero-pad, rotate y onto x (SciPy), take the cosine."""
    if centre:
        x, y = x - x.mean(0), y - y.mean(0)
    if alpha < 1.0:
        x, y = _whiten_reference(x, alpha), _whiten_reference(y, alpha)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    r, _ = orthogonal_procrustes(y, x)
    return float(np.sum(x * (y @ r)))


# --------------------------------------------------------------------------- Procrustes


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("centre", [True, False])
@pytest.mark.parametrize("shape", [(15, 3, 4), (9, 20, 5)])
def test_procrustes_similarity_equals_scipy_alignment(alpha, centre, shape):
    n, p, q = shape
    x, y = _patterns(n, p, q, seed=10 + p)
    if alpha < 1.0:  # whitening needs full column rank to stay well defined
        x, y = x[:, : n - 2], y[:, : n - 2]
    ref = _procrustes_reference(x, y, alpha, centre)
    got = procrustes_similarity(torch.tensor(x), torch.tensor(y), alpha=alpha, centre=centre)
    assert float(got) == pytest.approx(ref, abs=1e-9)
    dist = procrustes_distance(torch.tensor(x), torch.tensor(y), alpha=alpha, centre=centre)
    assert float(dist) == pytest.approx(math.acos(min(ref, 1.0)), abs=1e-7)


def test_partial_whitening_equals_netreps_and_keeps_the_total_variance():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((30, 4)) @ np.diag([5.0, 2.0, 1.0, 0.1])
    x = x - x.mean(0)
    for alpha in (0.0, 0.5, 0.9):
        got = partial_whiten(torch.tensor(x), alpha).numpy()
        np.testing.assert_allclose(got, _whiten_reference(x, alpha), rtol=1e-9, atol=1e-12)
        assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    # alpha = 1 is no whitening at all, and alpha = 0 whitens fully (isotropic covariance)
    assert torch.equal(partial_whiten(torch.tensor(x), 1.0), torch.tensor(x))
    full = partial_whiten(torch.tensor(x), 0.0).numpy()
    cov = full.T @ full
    np.testing.assert_allclose(cov / cov[0, 0], np.eye(4), atol=1e-9)


def test_partial_whitening_floors_eigenvalues_at_eig_tol():
    """A rank-deficient pattern (a zero direction) stays finite: its eigenvalue is floored."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((10, 3))
    x = np.hstack([x, x[:, :1] + x[:, 1:2]])  # 4 columns, rank 3
    x = x - x.mean(0)
    for tol in (1e-7, 1e-3):
        got = partial_whiten(torch.tensor(x), 0.5, eig_tol=tol).numpy()
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, _whiten_reference(x, 0.5, tol), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("alpha", [-1e-9, 1.0 + 1e-9, 2.0])
def test_partial_whitening_refuses_alpha_outside_the_unit_interval(alpha):
    with pytest.raises(ValueError, match=r"^alpha must be in \[0, 1\]"):
        partial_whiten(torch.randn(5, 2, dtype=torch.float64), alpha)
    with pytest.raises(ValueError, match=r"^alpha must be in \[0, 1\]"):
        procrustes_distance(torch.randn(5, 2), torch.randn(5, 2), alpha=alpha)


def test_shape_factor_reproduces_the_gram_of_wide_patterns_and_keeps_narrow_ones():
    rng = np.random.default_rng(13)
    narrow = torch.tensor(rng.standard_normal((6, 6)))
    assert shape_factor(narrow) is narrow  # p ≤ n: already at most n columns
    wide = rng.standard_normal((2, 6, 40))
    wide[:, 5] = wide[:, 4]  # a repeated stimulus: a zero eigenvalue that may round below 0
    wide = wide - wide.mean(-2, keepdims=True)
    f = shape_factor(torch.tensor(wide))
    assert f.shape == (2, 6, 6) and bool(torch.isfinite(f).all())
    np.testing.assert_allclose((f @ f.transpose(-1, -2)).numpy(),
                               wide @ wide.transpose(0, 2, 1), atol=1e-10)


def test_procrustes_similarity_of_a_pattern_with_itself_is_exactly_at_most_one():
    """Rounding may put ‖XᵀX‖_* a few ulps above ‖X‖²: the similarity is clipped, the distance
    is then 0, never NaN."""
    for seed in range(20):
        x = torch.randn(7, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        s = procrustes_similarity(x, 3.0 * x)
        assert float(s) <= 1.0
        assert float(procrustes_distance(x, 3.0 * x)) == pytest.approx(0.0, abs=1e-6)


def test_procrustes_batches_and_dtypes():
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((3, 8, 2)), rng.standard_normal((8, 4))
    got = procrustes_similarity(torch.tensor(x), torch.tensor(y))
    assert got.shape == (3,)
    for i in range(3):
        assert float(got[i]) == pytest.approx(_procrustes_reference(x[i], y), abs=1e-10)
    xi = torch.tensor(np.round(3 * x[0]).astype(np.int64))
    yi = torch.tensor(np.round(3 * y).astype(np.int64))
    assert procrustes_similarity(xi, yi).dtype == torch.float64  # integers counted in float64
    f32 = procrustes_similarity(xi.float(), yi)  # float32 with int64 stays float32
    assert f32.dtype == torch.float32
    assert procrustes_similarity(xi.float(), yi.double()).dtype == torch.float64
    ref = _procrustes_reference(xi.numpy().astype(float), yi.numpy().astype(float))
    assert float(f32) == pytest.approx(ref, abs=1e-5)


# --------------------------------------------------------------------------- ridge encoding

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import Ridge, RidgeCV  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402

_ALPHAS = np.logspace(-2, 4, 7)


def _encoding_data(n, p, v, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + 2.0
    w = rng.standard_normal((p, v)) * (rng.random((p, v)) < 0.3)
    y = x @ w * rng.uniform(0.05, 2.0, v) + rng.standard_normal((n, v)) * rng.uniform(0.5, 5, v)
    return x, y


def _gcv_reference(x, y, x_test, alphas):
    """GCV (Golub et al. 1979) written out: per penalty the ridge fit with an unpenalised
    intercept (scikit-learn's Ridge), mean squared residual / (1 - tr(H) / n)², tr H = 1 +
    Σ s² / (s² + α); the first penalty of smallest error per voxel."""
    n = len(x)
    s2 = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    errs, preds = [], []
    for a in alphas:
        model = Ridge(alpha=a).fit(x, y)
        dof = 1.0 + np.sum(s2 / (s2 + a))
        errs.append(((y - model.predict(x)) ** 2).mean(0) / (1.0 - dof / n) ** 2)
        preds.append(model.predict(x_test))
    best = np.argmin(np.array(errs), axis=0)
    return np.array(preds)[best, :, np.arange(y.shape[1])].T, np.asarray(alphas)[best]


@pytest.mark.parametrize("form", ["auto", "primal", "dual"])
@pytest.mark.parametrize("shape", [(30, 8, 5), (20, 40, 6), (16, 15, 4)])
def test_ridge_loo_equals_sklearn_ridgecv_in_every_form(form, shape):
    n, p, v = shape
    x, y = _encoding_data(n + 5, p, v, seed=n * p)
    ref = RidgeCV(alphas=_ALPHAS, alpha_per_target=True).fit(x[:n], y[:n])
    pred, best = ridge_cv_fit_predict(torch.tensor(x[:n]), torch.tensor(y[:n]),
                                      torch.tensor(x[n:]), _ALPHAS, form=form, voxel_block=3)
    np.testing.assert_array_equal(best.numpy(), ref.alpha_)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[n:]), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", [(30, 8, 5), (20, 40, 6)])
def test_ridge_gcv_equals_the_written_out_criterion(shape):
    n, p, v = shape
    x, y = _encoding_data(n + 4, p, v, seed=n + p)
    ref_pred, ref_alpha = _gcv_reference(x[:n], y[:n], x[n:], _ALPHAS)
    pred, best = ridge_cv_fit_predict(torch.tensor(x[:n]), torch.tensor(y[:n]),
                                      torch.tensor(x[n:]), _ALPHAS, cv="gcv")
    np.testing.assert_array_equal(best.numpy(), ref_alpha)
    np.testing.assert_allclose(pred.numpy(), ref_pred, rtol=1e-7, atol=1e-9)


def _assert_sklearn_fold_by_fold(res, x, y, folds, *, rtol: float, atol: float) -> None:
    """Each fold's penalties and held-out predictions equal RidgeCV fitted on that fold's rest."""
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(x)), test)
        ref = RidgeCV(alphas=_ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        np.testing.assert_array_equal(res.alphas[f].numpy(), ref.alpha_)
        np.testing.assert_allclose(res.predictions[test].numpy(), ref.predict(x[test]),
                                   rtol=rtol, atol=atol)


def test_ridge_encoding_equals_sklearn_fold_by_fold_and_scores_out_of_fold():
    x, y = _encoding_data(36, 12, 5, seed=3)
    folds = kfold_indices(36, 4, seed=2)
    res = ridge_encoding(x, y, alphas=_ALPHAS, folds=folds, scoring="r2")
    _assert_sklearn_fold_by_fold(res, x, y, folds, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(res.scores.numpy(),
                               r2_score(y, res.predictions.numpy(), multioutput="raw_values"),
                               rtol=1e-10)
    assert res.score == pytest.approx(float(res.scores.mean()))
    # the default folds are kfold_indices(n, 5, seed=0); the default scoring is Pearson r
    default = ridge_encoding(x, y, alphas=_ALPHAS)
    assert [f.tolist() for f in default.folds] == [f.tolist() for f in kfold_indices(36, 5)]
    r = [np.corrcoef(default.predictions[:, j], y[:, j])[0, 1] for j in range(5)]
    np.testing.assert_allclose(default.scores.numpy(), r, rtol=1e-10)


def test_score_predictions_against_numpy_and_sklearn_and_as_repeated_rows():
    rng = np.random.default_rng(4)
    obs = rng.standard_normal((12, 3))
    pred = obs + rng.standard_normal((12, 3))
    r = [np.corrcoef(pred[:, j], obs[:, j])[0, 1] for j in range(3)]
    got = score_predictions(torch.tensor(pred), torch.tensor(obs))
    np.testing.assert_allclose(got.numpy(), r, rtol=1e-12)
    np.testing.assert_allclose(score_predictions(torch.tensor(pred), torch.tensor(obs), "r2"),
                               r2_score(obs, pred, multioutput="raw_values"), rtol=1e-12)
    counts = rng.integers(0, 3, size=(2, 12))
    for scoring in ("corr", "r2"):
        got = score_predictions(torch.tensor(pred), torch.tensor(obs), scoring,
                                weights=torch.tensor(counts))
        assert got.shape == (2, 3)
        for b in range(2):
            rows = np.repeat(np.arange(12), counts[b])
            ref = score_predictions(torch.tensor(pred[rows]), torch.tensor(obs[rows]), scoring)
            np.testing.assert_allclose(got[b].numpy(), ref.numpy(), rtol=1e-10)


def test_split_half_ceiling_is_spearman_brown_of_the_half_correlation():
    rng = np.random.default_rng(5)
    signal = rng.standard_normal((40, 4))
    h1 = signal + rng.standard_normal((40, 4)) * [0.3, 1.0, 3.0, 30.0]
    h2 = signal + rng.standard_normal((40, 4)) * [0.3, 1.0, 3.0, 30.0]
    h2[:, 3] = rng.standard_normal(40) - h1[:, 3]  # negative correlation: reliability 0
    r = np.array([np.corrcoef(h1[:, j], h2[:, j])[0, 1] for j in range(4)])
    rho = np.clip(2 * r / (1 + r), 0.0, 1.0)
    got = split_half_ceiling(torch.tensor(h1), torch.tensor(h2))
    np.testing.assert_allclose(got.numpy(), np.sqrt(rho), rtol=1e-12)
    np.testing.assert_allclose(split_half_ceiling(torch.tensor(h1), torch.tensor(h2), "r2"),
                               rho, rtol=1e-12)
    assert float(got[3]) == 0.0


def test_kfold_indices_partition_the_stimuli_in_balanced_folds():
    for n, k in [(10, 3), (7, 7), (9, 2)]:
        folds = kfold_indices(n, k, seed=1)
        assert len(folds) == k
        assert sorted(np.concatenate(folds).tolist()) == list(range(n))
        assert max(map(len, folds)) - min(map(len, folds)) <= 1
        assert all(np.all(np.diff(f) > 0) for f in folds)  # sorted
        ordered = kfold_indices(n, k, seed=None)
        assert [f.tolist() for f in ordered] == [f.tolist() for f in np.array_split(
            np.arange(n), k)]
    labels = ["a"] * 5 + ["b"] * 7
    folds = kfold_indices(12, 3, seed=4, stratify=labels)
    assert sorted(np.concatenate(folds).tolist()) == list(range(12))
    for lab in ("a", "b"):
        per_fold = [sum(labels[i] == lab for i in f) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


@pytest.mark.parametrize(
    ("call", "pattern"),
    [(lambda x, y: kfold_indices(5, 1), r"^n_folds must be an int in \[2, n_stimuli=5\]"),
     (lambda x, y: kfold_indices(5, 6), r"^n_folds must be an int"),
     (lambda x, y: kfold_indices(4, 2, stratify=[0, 1]), r"^stratify must have one label"),
     (lambda x, y: ridge_encoding(x, y, alphas=[1.0, -1.0]), r"^alphas must be a non-empty"),
     (lambda x, y: ridge_encoding(x, y, alphas=[]), r"^alphas must be a non-empty"),
     (lambda x, y: ridge_encoding(x[:, 0], y), r"^x must be a 2-d"),
     (lambda x, y: ridge_encoding(x, y[:, 0]), r"^y must be a 2-d"),
     (lambda x, y: ridge_encoding(x, y[:9]), r"^x and y must have the same stimuli"),
     (lambda x, y: ridge_encoding(x, y, folds=[list(range(10))]), r"^folds must hold"),
     (lambda x, y: ridge_encoding(x, y, folds=[[0, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9]]),
      r"^folds must hold"),
     (lambda x, y: ridge_encoding(x, y, scoring="mse"), r"^scoring='mse'"),
     (lambda x, y: ridge_encoding(x, y, cv="kfold"), r"^cv='kfold'"),
     (lambda x, y: ridge_encoding(x, y, form="gram"), r"^form='gram'")],
)
def test_encoding_messages_name_the_argument(call, pattern):
    x, y = _encoding_data(10, 3, 2, seed=6)
    with pytest.raises(ValueError, match=pattern):
        call(x, y)


def test_ridge_encoding_refuses_non_finite_values_by_name():
    x, y = _encoding_data(10, 3, 2, seed=7)
    for bad in (np.nan, np.inf):
        x2 = x.copy()
        x2[3, 1] = bad
        with pytest.raises(ValueError, match=r"^x holds NaN or infinite"):
            ridge_encoding(x2, y)
        y2 = y.copy()
        y2[0, 0] = bad
        with pytest.raises(ValueError, match=r"^y holds NaN or infinite"):
            ridge_encoding(x, y2)


# --------------------------------------------------------------------------- encoding (2nd run)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [(lambda x, y: ridge_cv_fit_predict(x, y, x, cv="kfold"), r"^cv='kfold'"),
     (lambda x, y: ridge_cv_fit_predict(x, y, x, form="gram"), r"^form='gram'"),
     (lambda x, y: score_predictions(y, y, "mse"), r"^scoring='mse'"),
     (lambda x, y: split_half_ceiling(y, y, "mse"), r"^scoring='mse'")],
)
def test_encoding_helpers_name_the_argument(call, pattern):
    x, y = _encoding_data(10, 3, 2, seed=6)
    with pytest.raises(ValueError, match=pattern):
        call(torch.tensor(x), torch.tensor(y))


def test_kfold_indices_defaults_shuffle_and_stratified_round_robin():
    # default: 5 folds; a seed shuffles as numpy's default_rng(seed).permutation
    assert len(kfold_indices(12)) == 5
    for seed in (0, 3):
        order = np.random.default_rng(seed).permutation(12)
        assert [f.tolist() for f in kfold_indices(12, 4, seed=seed)] == [
            sorted(f.tolist()) for f in np.array_split(order, 4)]
    # stratified, seed=None: each label's stimuli in order, dealt round-robin over the folds,
    # continuing where the previous label stopped (a literal loop)
    labels = np.array(["b", "a", "c", "a", "b", "a", "c", "b", "a", "c"])
    fold_of, k = {}, 3
    for label in sorted(set(labels)):
        for i in np.flatnonzero(labels == label):
            fold_of[int(i)] = len(fold_of) % k
    expect = [[i for i in range(10) if fold_of[i] == f] for f in range(k)]
    assert [f.tolist() for f in kfold_indices(10, k, seed=None, stratify=labels)] == expect
    # sizes as np.array_split (first folds larger), also with one stimulus per label
    for lab in (labels, np.arange(7), np.array([0, 0, 1, 2, 2, 2, 3])):
        n = len(lab)
        for seed in (None, 1):
            sizes = [len(f) for f in kfold_indices(n, 3, seed=seed, stratify=lab)]
            assert sizes == [len(f) for f in np.array_split(np.arange(n), 3)]


def _gcv_data():
    x, y = _encoding_data(24, 40, 8, seed=0)
    x[0] *= 4  # one high-leverage stimulus: GCV and LOO choose differently
    return x, y


def test_ridge_cv_fit_predict_gcv_differs_from_loo_and_equals_its_reference():
    x, y = _gcv_data()
    n = 20
    ref_pred, ref_alpha = _gcv_reference(x[:n], y[:n], x[n:], _ALPHAS)
    loo = RidgeCV(alphas=_ALPHAS, alpha_per_target=True).fit(x[:n], y[:n]).alpha_
    assert np.any(ref_alpha != loo)  # the data tell the two criteria apart
    pred, best = ridge_cv_fit_predict(torch.tensor(x[:n]), torch.tensor(y[:n]),
                                      torch.tensor(x[n:]), _ALPHAS, cv="gcv")
    np.testing.assert_array_equal(best.numpy(), ref_alpha)
    np.testing.assert_allclose(pred.numpy(), ref_pred, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("form", ["auto", "primal"])
def test_ridge_encoding_passes_cv_to_every_fold(form):
    # auto with p > n uses the shared Gram; primal the per-fold features
    x, y = _gcv_data()
    folds = kfold_indices(24, 3, seed=1)
    res = ridge_encoding(x, y, alphas=_ALPHAS, folds=folds, cv="gcv", form=form)
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(24), test)
        ref_pred, ref_alpha = _gcv_reference(x[train], y[train], x[test], _ALPHAS)
        np.testing.assert_array_equal(res.alphas[f].numpy(), ref_alpha)
        np.testing.assert_allclose(res.predictions[test].numpy(), ref_pred, rtol=1e-7,
                                   atol=1e-9)


def test_ridge_encoding_passes_the_fold_arguments_and_keeps_the_scoring():
    x, y = _encoding_data(30, 5, 3, seed=8)
    labels = np.repeat([0, 1, 2], 10)
    res = ridge_encoding(x, y, alphas=_ALPHAS, n_folds=3, seed=5, stratify=labels,
                         scoring="r2")
    assert [f.tolist() for f in res.folds] == [
        f.tolist() for f in kfold_indices(30, 3, seed=5, stratify=labels)]
    assert res.scoring == "r2"
    # exactly two explicit folds are accepted (the documented minimum); nested lists as arrays
    two = ridge_encoding(x, y, alphas=_ALPHAS, folds=[np.arange(15)[:, None], range(15, 30)])
    assert [f.tolist() for f in two.folds] == [list(range(15)), list(range(15, 30))]
    assert two.scoring == "corr"


def test_ridge_encoding_dtypes_and_inputs_that_require_grad():
    x, y = _encoding_data(20, 4, 3, seed=9)
    # float64 features: penalties and predictions in float64 even with float32 responses
    res = ridge_encoding(torch.tensor(x), torch.tensor(y, dtype=torch.float32), alphas=_ALPHAS)
    assert res.alphas.dtype == res.predictions.dtype == torch.float64
    assert set(res.alphas.flatten().tolist()) <= set(_ALPHAS.tolist())
    # float32 stays float32; integers become float64
    res32 = ridge_encoding(torch.tensor(x, dtype=torch.float32),
                           torch.tensor(y, dtype=torch.float32), alphas=_ALPHAS)
    assert res32.predictions.dtype == res32.alphas.dtype == torch.float32
    resi = ridge_encoding(np.round(x * 10).astype(int), np.round(y * 10).astype(int),
                          alphas=_ALPHAS)
    assert resi.predictions.dtype == torch.float64
    # tensors that require grad are read as data (no graph, no error)
    xg = torch.tensor(x, requires_grad=True)
    resg = ridge_encoding(xg, torch.tensor(y), alphas=_ALPHAS)
    ref = ridge_encoding(x, y, alphas=_ALPHAS)
    assert not resg.predictions.requires_grad
    torch.testing.assert_close(resg.predictions, ref.predictions, rtol=0, atol=0)


def test_ridge_loo_with_a_dense_penalty_grid_equals_sklearn_exactly():
    # neighbouring penalties with nearly equal LOO errors: every screen (cheap bounds, nearby
    # intervals, float32 errors) must keep the exhaustive float64 choice (scikit-learn's)
    x, y = _encoding_data(45, 60, 300, seed=1)
    alphas = np.logspace(1, 3, 60)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[:40], y[:40])
    pred, best = ridge_cv_fit_predict(torch.tensor(x[:40]), torch.tensor(y[:40]),
                                      torch.tensor(x[40:]), alphas)
    np.testing.assert_array_equal(best.numpy(), ref.alpha_)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[40:]), rtol=1e-7, atol=1e-9)


def test_ridge_loo_at_exactly_three_training_stimuli_equals_sklearn():
    x, y = _encoding_data(5, 4, 3, seed=10)
    for form in ("primal", "dual"):
        ref = RidgeCV(alphas=_ALPHAS, alpha_per_target=True).fit(x[:3], y[:3])
        pred, best = ridge_cv_fit_predict(torch.tensor(x[:3]), torch.tensor(y[:3]),
                                          torch.tensor(x[3:]), _ALPHAS, form=form)
        np.testing.assert_array_equal(best.numpy(), ref.alpha_)
        np.testing.assert_allclose(pred.numpy(), ref.predict(x[3:]), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("cx", "cy"), [(1e-8, 1.0), (1.0, 1e-4), (1e3, 1e5)])
def test_ridge_loo_is_equivariant_to_the_scale_of_features_and_responses(cx, cy):
    # features × c with penalties × c², responses × d: the same choice, predictions × d
    x, y = _encoding_data(25, 40, 40, seed=1)
    alphas = np.logspace(0, 3, 20)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[:20], y[:20])
    pred, best = ridge_cv_fit_predict(torch.tensor(x[:20] * cx), torch.tensor(y[:20] * cy),
                                      torch.tensor(x[20:] * cx), alphas * cx**2)
    np.testing.assert_array_equal(np.searchsorted(alphas * cx**2, best.numpy()),
                                  np.searchsorted(alphas, ref.alpha_))
    np.testing.assert_allclose(pred.numpy(), ref.predict(x[20:]) * cy, rtol=1e-6,
                               atol=1e-9 * cy)


def test_ridge_encoding_fold_index_types_and_no_folds():
    x, y = _encoding_data(12, 3, 2, seed=12)
    folds = kfold_indices(12, 3, seed=0)
    ref = ridge_encoding(x, y, alphas=_ALPHAS, folds=folds)
    # unsigned small-integer indices are indices, not masks
    res = ridge_encoding(x, y, alphas=_ALPHAS, folds=[f.astype(np.uint8) for f in folds])
    torch.testing.assert_close(res.predictions, ref.predictions, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^folds must hold"):
        ridge_encoding(x, y, alphas=_ALPHAS, folds=[])


def test_ridge_encoding_shared_gram_with_large_per_feature_offsets_equals_sklearn():
    # features offset by ±1e5 per column (p > n: one Gram shared by all folds): the Gram is
    # built from per-feature centred data, else the re-centring per fold cancels the digits
    x, y = _encoding_data(24, 40, 4, seed=13)
    x = x + np.where(np.arange(40) % 2, 1e5, -1e5)
    folds = kfold_indices(24, 3, seed=0)
    res = ridge_encoding(x, y, alphas=_ALPHAS, folds=folds)
    _assert_sklearn_fold_by_fold(res, x, y, folds, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- CKA / Procrustes (2nd)


def test_partial_whitening_and_procrustes_batched_equal_item_by_item():
    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((3, 8, 4)) + 2.0, rng.standard_normal((3, 8, 5)) - 1.0
    assert torch.equal(partial_whiten(torch.tensor(x[0])),
                       partial_whiten(torch.tensor(x[0]), 1.0))  # default: no whitening
    got = partial_whiten(torch.tensor(x), 0.3)
    sims = procrustes_similarity(torch.tensor(x), torch.tensor(y), alpha=0.3)
    assert got.shape == x.shape and sims.shape == (3,)
    for i in range(3):
        np.testing.assert_allclose(got[i].numpy(), _whiten_reference(x[i], 0.3), rtol=1e-9,
                                   atol=1e-12)
        assert float(sims[i]) == pytest.approx(_procrustes_reference(x[i], y[i], 0.3),
                                               abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_hsic_terms_and_cka_from_grams_defaults_and_two_batch_dims(debiased):
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((2, 3, 6, 5))
    k = torch.tensor(x @ np.swapaxes(x, -1, -2))
    lg = torch.tensor(y @ np.swapaxes(y, -1, -2))
    assert torch.equal(hsic_terms(k, lg), hsic_terms(k, lg, False))  # default: biased
    assert torch.equal(cka_from_grams(k, lg), cka_from_grams(k, lg, False))
    terms = hsic_terms(k, lg, debiased)
    ckas = cka_from_grams(k, lg, debiased)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(terms[i, j], hsic_terms(k[i, j], lg[i, j], debiased))
            assert float(ckas[i, j]) == pytest.approx(_cka_reference(x[i, j], y[i, j],
                                                                     debiased), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_float32_with_large_offsets_and_batched_gradients(debiased):
    rng = np.random.default_rng(17)
    # float32 with offsets of 1e3: the patterns are centred before any product
    x, y = _patterns(12, 30, 40, seed=18)
    x32, y32 = torch.tensor(x + 1e3, dtype=torch.float32), torch.tensor(y - 1e3,
                                                                       dtype=torch.float32)
    assert float(cka(x32, y32, debiased)) == pytest.approx(_cka_reference(x, y, debiased),
                                                           abs=2e-3)
    xb = rng.standard_normal((3, 5, 7, 30)) + 1.0  # wide, float32, 2 batch dims, n ≠ batch
    yb = rng.standard_normal((3, 5, 7, 2))
    got = cka(torch.tensor(xb, dtype=torch.float32), torch.tensor(yb, dtype=torch.float32),
              debiased)
    # batched patterns that require grad (the autograd Gram path)
    xg = torch.tensor(xb, requires_grad=True)
    gg = cka(xg, torch.tensor(yb), debiased)
    gg.sum().backward()
    assert xg.grad is not None and xg.grad.shape == xb.shape
    for i in range(3):
        for j in range(5):
            ref = _cka_reference(xb[i, j], yb[i, j], debiased)
            assert float(got[i, j]) == pytest.approx(ref, abs=1e-4)
            assert float(gg[i, j].detach()) == pytest.approx(ref, abs=1e-10)


def test_partial_whitening_just_below_the_identity_threshold_still_whitens():
    # alpha = 1 - eig_tol is still whitened (only alpha above it is the identity): a
    # direction of variance 1e-6 is then scaled by ~1 + 1e-4, as netrep's formula
    rng = np.random.default_rng(19)
    x = rng.standard_normal((10, 3)) * [1.0, 1.0, 1e-3]
    alpha = 1.0 - 1e-7
    np.testing.assert_allclose(partial_whiten(torch.tensor(x), alpha).numpy(),
                               _whiten_reference(x, alpha), rtol=1e-9, atol=1e-13)
    assert not np.allclose(_whiten_reference(x, alpha), x, rtol=1e-6, atol=0)


def test_split_half_ceiling_of_affinely_related_halves_is_one_never_above():
    # r = 1 up to rounding (here a few ulps above 1 for some voxels): the ceiling is clipped
    rng = np.random.default_rng(0)
    h1 = torch.tensor(rng.standard_normal((40, 50)))
    h2 = h1 * 3.7 + 55.0
    for scoring in ("corr", "r2"):
        got = split_half_ceiling(h1, h2, scoring)
        assert float(got.max()) <= 1.0
        np.testing.assert_allclose(got.numpy(), 1.0, rtol=1e-12)
