"""Cross-validated ridge encoding models: layer features → voxel / neuron responses, batched.

For each outer fold over stimuli, a ridge regression with an intercept is fitted on the training
stimuli for every voxel at once, with the penalty chosen **per voxel** from ``alphas`` by efficient
leave-one-out (LOO) cross-validation on the training stimuli (or, cheaper, generalised CV), and the
held-out stimuli are predicted. The out-of-fold predictions of all stimuli are then scored per
voxel (Pearson r or R²) against the observed responses.

One eigendecomposition per fold serves all penalties and all voxels. With the centred training
features X̃ (n × p) = U S Vᵀ and Z = Uᵀỹ:

- hat-matrix diagonal ``H_ii(α) = 1/n + Σ_j U_ij² s_j² / (s_j² + α)`` (the 1/n is the unpenalised
  intercept), ridge residual ``r(α) = (ỹ − UZ) + U diag(α / (s_j² + α)) Z``;
- LOO residual ``r_i / (1 − H_ii)`` (exact, as scikit-learn's ``RidgeCV``), GCV residual
  ``r_i / (1 − tr H / n)`` (Golub et al. 1979; O(rank · voxels) per penalty instead of
  O(n · rank · voxels));
- the form is chosen by shape as scikit-learn's ``gcv_mode="auto"``: the dual (eigenvectors of
  the n × n Gram X̃X̃ᵀ) when features outnumber stimuli, the primal (thin SVD of X̃) otherwise.

Voxels are processed in blocks (``voxel_block``) so that memory stays bounded whatever their
number; everything runs on the inputs' device (CPU or CUDA). The numbers equal scikit-learn's
``RidgeCV(alphas, alpha_per_target=True)`` fitted fold by fold (tests/test_encoding.py).

Examples
--------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(60, 20, generator=g, dtype=torch.float64)
>>> y = x[:, :3] @ torch.randn(3, 8, generator=g, dtype=torch.float64)
>>> y = y + 0.5 * torch.randn(60, 8, generator=g, dtype=torch.float64)
>>> res = ridge_encoding(x, y, alphas=[0.1, 1.0, 10.0], n_folds=5, seed=0)
>>> res.scores.shape, res.score > 0.8
(torch.Size([8]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from brainrdl.validation import check_choice

__all__ = [
    "DEFAULT_ALPHAS",
    "EncodingResult",
    "kfold_indices",
    "ridge_cv_fit_predict",
    "ridge_encoding",
    "score_predictions",
    "split_half_ceiling",
]

#: default penalties: 10 log-spaced values (scale them to your features' variance)
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 7, 10))
SCORINGS = ("corr", "r2")
CV_KINDS = ("loo", "gcv")
FORMS = ("auto", "primal", "dual")


def kfold_indices(
    n: int, n_folds: int = 5, *, seed: int | None = 0, stratify: Sequence | None = None
) -> list[np.ndarray]:
    """Test indices of ``n_folds`` folds over ``n`` stimuli (shuffled with ``seed``).

    Parameters
    ----------
    n : int
        Number of stimuli.
    n_folds : int
        Number of folds (2 ≤ n_folds ≤ n).
    seed : int | None
        Seed of the shuffle; None keeps the stimuli in order (contiguous folds).
    stratify : Sequence | None
        Optional label per stimulus (e.g. category): each label's stimuli are spread evenly over
        the folds, as scikit-learn's ``StratifiedKFold``.

    Returns
    -------
    list of numpy.ndarray
        Sorted test indices per fold; together they cover every stimulus once.

    Examples
    --------
    >>> [f.tolist() for f in kfold_indices(6, 3, seed=None)]
    [[0, 1], [2, 3], [4, 5]]
    >>> folds = kfold_indices(8, 2, stratify=["a", "a", "a", "a", "b", "b", "b", "b"])
    >>> [sorted(int(i) // 4 for i in f) for f in folds]
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    if not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be an int in [2, n_stimuli={n}]; got {n_folds!r}")
    rng = np.random.default_rng(seed)
    if stratify is None:
        order = rng.permutation(n) if seed is not None else np.arange(n)
        return [np.sort(f) for f in np.array_split(order, n_folds)]
    labels = np.asarray(stratify)
    if labels.shape != (n,):
        raise ValueError(f"stratify must have one label per stimulus ({n}); got {labels.shape}")
    fold_of = np.empty(n, dtype=np.intp)
    offset = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if seed is not None:
            members = rng.permutation(members)
        # round-robin, continuing where the previous label stopped: fold sizes stay balanced
        fold_of[members] = (offset + np.arange(len(members))) % n_folds
        offset += len(members)
    return [np.flatnonzero(fold_of == f) for f in range(n_folds)]


def _check_alphas(alphas) -> np.ndarray:
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(
            f"alphas must be a non-empty 1-d sequence of positive numbers; got {alphas!r}"
        )
    return a


def ridge_cv_fit_predict(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    cv: str = "loo",
    form: str = "auto",
    voxel_block: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge with a per-voxel penalty by efficient LOO / GCV on the training set; predict the test.

    Equals ``sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True).fit(x_train, y_train)``
    followed by ``.predict(x_test)`` (``cv="loo"``; ties between penalties go to the first, as
    there). Intercept fitted, not penalised.

    Parameters
    ----------
    x_train, y_train, x_test : torch.Tensor
        (n, p) features, (n, v) responses and (m, p) test features (one dtype and device).
    alphas : Sequence[float]
        Candidate penalties (positive).
    cv : str
        ``"loo"`` (exact leave-one-out) or ``"gcv"`` (generalised CV, cheaper per penalty).
    form : str
        ``"auto"`` (dual when p > n, as scikit-learn), ``"primal"`` or ``"dual"``.
    voxel_block : int | None
        Voxels per block (memory ∝ n · block · 2); default: all voxels up to 4,096.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        (m, v) predictions and (v,) chosen penalties.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(30, 5, dtype=torch.float64)
    >>> y = x @ torch.randn(5, 4, dtype=torch.float64)
    >>> pred, best = ridge_cv_fit_predict(x[:20], y[:20], x[20:], [1e-3, 1e3])
    >>> best.tolist(), bool(torch.allclose(pred, y[20:], atol=1e-2))
    ([0.001, 0.001, 0.001, 0.001], True)
    """
    check_choice("cv", cv, CV_KINDS)
    check_choice("form", form, FORMS)
    x_train, y_train, x_test = x_train.detach(), y_train.detach(), x_test.detach()
    return _ridge_cv(x_train, y_train, x_test, _check_alphas(alphas), cv, form, voxel_block)


def _ridge_cv(x_train, y_train, x_test, a_np, cv, form, voxel_block, grams=None):
    """:func:`ridge_cv_fit_predict` on checked arguments; ``grams``: the centred train Gram
    (n, n) and test-train Gram (m, n) when the caller has them (dual form only; the features
    are then not needed: pass None)."""
    n = y_train.shape[0]
    if n < 3:
        raise ValueError(f"ridge LOO needs at least 3 training stimuli; got {n}")
    ref = y_train if x_train is None else x_train  # y has x's dtype in ridge_encoding
    dtype, device = ref.dtype, ref.device
    a = torch.as_tensor(a_np, dtype=dtype, device=device)
    p = None if x_train is None else x_train.shape[1]
    dual = grams is not None or form == "dual" or (form == "auto" and p > n)
    eps = torch.finfo(dtype).eps
    if dual:
        if grams is None:
            x_mean = x_train.mean(0)
            xc, xt = x_train - x_mean, x_test - x_mean
            grams = _mm(xc, xc.T), _mm(xt, xc.T)  # NumPy spots x @ x.T: a rank-k update
        s2, u = _eigh(grams[0])
        keep = s2 > s2.max().clamp(min=0) * n * eps * 10
        s2, u = s2[keep], u[:, keep]
        proj = _mm(grams[1], u) / s2.sqrt()  # test features in the singular basis
    else:
        x_mean = x_train.mean(0)
        xc, xt = x_train - x_mean, x_test - x_mean
        u, s, vh = torch.linalg.svd(xc, full_matrices=False)
        keep = s > s.max() * max(n, p) * eps * 10
        u, s, vh = u[:, keep], s[keep], vh[keep]
        s2 = s * s
        proj = xt @ vh.T
    # leverage left outside span(U) and the intercept: zero when U spans the centred space
    full = u.shape[1] == n - 1
    u2 = u * u
    lev0 = None if full else (1.0 - 1.0 / n - u2.sum(1)).clamp(min=0.0)
    y_mean = y_train.mean(0)
    v = y_train.shape[1]
    block = int(voxel_block) if voxel_block else min(v, 4096) or 1
    preds = torch.empty(proj.shape[0], v, dtype=dtype, device=device)
    best_alpha = torch.empty(v, dtype=dtype, device=device)
    shrinks = a[:, None] / (s2[None, :] + a[:, None])  # (A, r) residual factor per direction
    denoms = shrinks @ u2.T  # (A, n): 1 - H_ii = lev0_i + α Σ_j U_ij² / (s_j² + α)
    if lev0 is not None:
        denoms = denoms + lev0
    # CPU, full rank (dual): LOO errors as quadratic forms ‖Lᵀ(shrink∘z)‖² with M = L Lᵀ
    factors = _LooFactors(u, denoms) if cv == "loo" and full and device.type == "cpu" else None
    # LOO error bounds: Σ_i r_i² / d_i² lies between Σ r² / max d² and Σ r² / min d²
    margin = max(1e4 * eps, 1e-8)  # also covers the float64 path's rounding of L Lᵀ
    w_lo = denoms.max(1).values.pow(-2) * (1.0 - margin)
    w_hi = denoms.min(1).values.pow(-2) * (1.0 + margin)
    for v0 in range(0, v, block):
        yc = y_train[:, v0 : v0 + block] - y_mean[v0 : v0 + block]
        z = _mm(u.T, yc)  # (r, vb)
        r0 = None if full else yc - _mm(u, z)  # residual outside span(U): same for every alpha
        # Σ_i r_i² for every penalty by orthogonality: ‖r0‖² + Σ_j shrink_j² Z_j²  (A, vb)
        ss = _mm(shrinks * shrinks, z * z)
        if r0 is not None:
            ss = ss + (r0 * r0).sum(0)
        if cv == "gcv":
            dof = 1.0 + (s2[None, :] / (s2[None, :] + a[:, None])).sum(1)  # tr H (+ intercept)
            err = ss / n / (1.0 - dof[:, None] / n) ** 2
        else:
            err = _loo_errors(ss, w_lo, w_hi, z, r0, u, shrinks, denoms, factors, n)
        best_idx = torch.argmin(err, dim=0)  # the first of tied penalties, as scikit-learn
        alpha_v = a[best_idx]  # (vb,)
        beta = (s2.sqrt()[:, None] / (s2[:, None] + alpha_v[None, :])) * z  # ridge coefficients
        preds[:, v0 : v0 + block] = _mm(proj, beta) + y_mean[v0 : v0 + block]
        best_alpha[v0 : v0 + block] = alpha_v
    return preds, best_alpha


def _loo_errors(ss, w_lo, w_hi, z, r0, u, shrinks, denoms, factors, n) -> torch.Tensor:
    """(A, vb) LOO errors where they decide the penalty; +inf where a penalty is ruled out.

    The bounds ``w_lo · ss ≤ err ≤ w_hi · ss`` (cheap: O(A · r · vb)) rule out every penalty
    whose lower bound exceeds the smallest upper bound of the voxel; a voxel with a single
    penalty left needs no exact error. On the float64 CPU path the penalties left are then
    screened in float32 (:func:`_screen_float32`: half the cost, with a rigorous error bound);
    exact float64 errors are computed only for the voxels and penalties the screen leaves
    undecided. The choice equals the exhaustive float64 one (all bounds carry margins for the
    rounding of both computations).
    """
    lo, hi = w_lo[:, None] * ss, w_hi[:, None] * ss
    cand = lo <= hi.min(0).values  # (A, vb)
    single = cand.sum(0) == 1
    err = torch.full_like(ss, float("inf"))
    err[cand & single] = 0.0  # the only penalty left
    todo = cand & ~single
    if factors is not None and ss.dtype == torch.float64 and bool(todo.any()):
        # the cheap bounds are of Σ_i (LOO residual)², the errors their mean
        todo = _screen_float32(ss, z, shrinks, denoms, factors, todo, lo / n, hi / n, n)
        decided = todo.sum(0) == 1
        err[todo & decided] = 0.0
        todo = todo & ~decided
    for i in range(ss.shape[0]):
        idx = torch.nonzero(todo[i]).flatten()
        if idx.numel() == 0:
            continue
        lower = factors[i] if factors is not None else None
        if lower is not None:
            err[i, idx] = _quadratic_err(lower, _scaled_columns(z, shrinks[i], idx)) / n
        else:
            w = shrinks[i][:, None] * z[:, idx]
            resid = _mm(u, w)
            if r0 is not None:
                resid = resid + r0[:, idx]
            err[i, idx] = (resid / denoms[i][:, None]).square_().mean(0)
    return err


#: unit roundoffs of float32 and float64
_U32, _U64 = 2.0**-24, 2.0**-53


def _screen_float32(ss, z, shrinks, denoms, factors, todo, lo, hi, n) -> torch.Tensor:
    """Narrow ``todo`` (A, vb) by float32 LOO errors with rigorous error intervals.

    ``lo``, ``hi`` (A, vb): valid bounds on the float64 errors (the cheap ones). First each
    voxel's likeliest best penalty, then all others from strong to weak; for each penalty, the
    voxels still in play get an interval

    - from the penalty last screened for that voxel (:func:`_nearby_interval`): penalties far
      below (or above) the feature spectrum have nearly equal errors, so such a penalty is
      often ruled out without computing anything;
    - else by computing it in float32: err = ‖Lᵀw‖² / n with w = shrink_i ∘ z_v. With L and w
      rounded, y = fl(Lᵀw) obeys |y − Lᵀw| ≤ γ' |L|ᵀ|w| componentwise, with
      γ' = γ_r (1 + u)² + 2u + u² (γ_r = r u / (1 − r u), any summation order), so
      ‖y − Lᵀw‖ ≤ γ' √λ ‖w‖ where λ ≥ λ_max(|L| |L|ᵀ) (its largest row sum) and ‖w‖² = ss.
      The float64 computation it stands in for obeys the same bound with u = 2⁻⁵³; both are
      added, so the interval holds the float64 value.

    A penalty stays only where its lower end is at most the voxel's smallest upper end.
    """
    r = z.shape[0]

    def gamma(m: int, unit: float) -> float:
        return m * unit / (1.0 - m * unit)

    g32 = gamma(r, _U32) * (1 + _U32) ** 2 + 2 * _U32 + _U32**2
    g64 = gamma(r, _U64) * (1 + _U64) ** 2 + 2 * _U64 + _U64**2
    gsum = gamma(r + 1, _U32)  # the float32 sum of squares
    slack = 1e-12  # the float64 path's own final sum and division by n
    lo_s, hi_s = lo.clone(), hi.clone()
    # Σ_k shrink_ak shrink_bk z_k² for all penalty pairs: one (A², r) × (r, vb) product
    a_n = shrinks.shape[0]
    cross = _mm((shrinks[:, None, :] * shrinks[None, :, :]).reshape(a_n * a_n, -1), z * z)
    cross = cross.reshape(a_n, a_n, -1)
    ref = torch.full((ss.shape[1],), -1, dtype=torch.long)  # last penalty screened per voxel
    done = torch.zeros_like(todo)
    order = torch.argsort(shrinks.mean(1)).tolist()  # weak to strong penalties
    # first each voxel's likeliest best (smallest cheap midpoint): its tight upper end then
    # rules out more of the others; then all the others, strong to weak
    guess = torch.where(todo, lo + hi, torch.inf).argmin(0)
    passes = [(i, todo[i] & (guess == i)) for i in order] + [(i, todo[i]) for i in order[::-1]]
    for i, mask in passes:
        idx = torch.nonzero(mask & ~done[i]).flatten()
        if idx.numel() == 0:
            continue
        for j in ref[idx].unique().tolist():
            if j < 0:
                continue
            sel = idx[ref[idx] == j]
            p_lo, p_hi = _nearby_interval(i, j, lo_s[j, sel], hi_s[j, sel], cross[:, :, sel],
                                          shrinks, denoms, g64, n)
            lo_s[i, sel] = torch.maximum(lo_s[i, sel], p_lo)
            hi_s[i, sel] = torch.minimum(hi_s[i, sel], p_hi)
        idx = idx[lo_s[i, idx] <= hi_s[:, idx].min(0).values]  # not yet ruled out
        screen = factors.float32(i) if idx.numel() else None
        if screen is None:
            continue
        lower32, lam = screen
        q = _quadratic_err(lower32, _scaled_columns(z, shrinks[i], idx, np.float32))
        q = q.to(torch.float64)
        y_lo = (q / (1.0 + gsum)).sqrt()
        y_hi = (q / (1.0 - gsum)).sqrt()
        delta = (g32 + g64) * np.sqrt(lam) * ss[i, idx].sqrt() * (1.0 + 1e-12)
        f_lo = (y_lo - delta).clamp(min=0.0).square() / n * (1.0 - slack)
        f_hi = (y_hi + delta).square() / n * (1.0 + slack)
        lo_s[i, idx] = torch.maximum(lo_s[i, idx], f_lo)
        hi_s[i, idx] = torch.minimum(hi_s[i, idx], f_hi)
        ref[idx] = i
        done[i, idx] = True
    return todo & (lo_s <= hi_s.min(0).values)


def _nearby_interval(i, j, lo_j, hi_j, cross, shrinks, denoms, g64, n):
    """Bounds on the float64 LOO errors of penalty i from an interval [lo_j, hi_j] of those of
    penalty j, for voxels with ``cross`` (A, A, nv) = Σ_k shrink_ak shrink_bk z_k² (full-rank
    dual form).

    With t_k = shrink_ik / shrink_jk and any centre t̄ (here per voxel the mean of t weighted
    by shrink_jk² z_k², which makes ε smallest), the residual is
    r_i = t̄ r_j + U((t − t̄) ∘ shrink_j ∘ z), the second term of norm
    e = ‖(t − t̄) ∘ shrink_j ∘ z‖ (U has orthonormal columns). 1 − H_mm(i) = θ_m (1 − H_mm(j))
    with θ_m the ratio of the two penalties' denominators, so the norm of the LOO residuals,
    √(n err_i) = ‖D_i⁻¹ r_i‖, lies within [t̄ √(n lo_j) / θ_max − ε, t̄ √(n hi_j) / θ_min + ε],
    ε = e / min_m(1 − H_mm(i)). e² = Σ t²c²z² − (Σ t c² z²)² / Σ c² z² (sums of positive
    terms, rounding ≲ r u of the first: a margin 1e-11 of it is added). The float64 value
    differs from the exact one by at most g64 √(Σ d⁻²) max d relative (the Frobenius bound of
    :func:`_screen_float32`'s λ), added with a margin for the rounding of its factor and U's
    orthonormality.
    """
    t = shrinks[i] / shrinks[j]
    # Σ c² z², Σ t c² z², Σ t² c² z² with c = shrink_j, t c = shrink_i
    w_c, w_b, w_a = cross[j, j], cross[i, j], cross[i, i]
    t_bar = torch.where(w_c > 0, w_b / w_c.clamp(min=torch.finfo(w_c.dtype).tiny), t.mean())
    e2 = (w_a - w_b * t_bar).clamp(min=0.0) + 1e-11 * w_a
    d = denoms[i]
    eps = e2.sqrt() / float(d.min())
    theta = d / denoms[j]
    th_min, th_max = float(theta.min()), float(theta.max())
    # + 1e-8: L Lᵀ of the float64 path differs from Uᵀ D⁻² U by its rounding (≲ n r u κ)
    rel = g64 * float(d.pow(-2).sum().sqrt() * d.max()) * (1.0 + 1e-6) + 1e-8
    s_lo = (t_bar / th_max * (n * lo_j).sqrt() - eps).clamp(min=0.0) * (1.0 - rel)
    s_hi = (t_bar / th_min * (n * hi_j).sqrt() + eps) * (1.0 + rel)
    return s_lo.square() / n, s_hi.square() / n


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix product; through NumPy's BLAS on CPU (OpenBLAS: measured 1.4x faster in float64
    than torch's MKL on the AMD machine of the benchmarks), torch elsewhere."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


class _LooFactors:
    """Per penalty, the Cholesky factor L of M = Uᵀ D⁻² U (D = diag(1 − H_ii)), Fortran order,
    computed when first needed (penalties ruled out by the bounds never need one).

    Then Σ_i LOO residual_i² = ‖Lᵀ (shrink ∘ z)‖² for every voxel: one triangular product
    (half the flops of the general product U (shrink ∘ z)) per penalty and block.
    """

    def __init__(self, u: torch.Tensor, denoms: torch.Tensor) -> None:
        self.u, self.denoms, self.cache, self.cache32 = u.numpy(), denoms.numpy(), {}, {}

    def __getitem__(self, i: int) -> np.ndarray | None:
        if i not in self.cache:
            ud = self.u / self.denoms[i][:, None]
            try:
                self.cache[i] = np.asfortranarray(np.linalg.cholesky(ud.T @ ud))
            except np.linalg.LinAlgError:  # not numerically positive definite
                self.cache[i] = None
        return self.cache[i]

    def float32(self, i: int) -> tuple[np.ndarray, float] | None:
        """L in float32 and an upper bound on λ_max(|L| |L|ᵀ) (largest row sum, rounded up)."""
        if i not in self.cache32:
            lower = self[i]
            if lower is None:
                self.cache32[i] = None
            else:
                a = np.abs(lower)
                lam = float((a @ (a.T @ np.ones(a.shape[0]))).max()) * (1.0 + 1e-10)
                self.cache32[i] = (lower.astype(np.float32, order="F"), lam)
        return self.cache32[i]


def _scaled_columns(z: torch.Tensor, scale: torch.Tensor, idx: torch.Tensor, dtype=None):
    """``scale[:, None] * z[:, idx]`` as a fresh C-ordered array (in ``dtype``), in one
    NumPy pass where possible (torch's gather, product and cast are three, ~3x slower)."""
    z_np, idx_np = z.numpy(), idx.numpy()
    dtype = dtype or z_np.dtype
    out = np.empty((z_np.shape[0], len(idx_np)), dtype=dtype)
    cols = z_np if len(idx_np) == z_np.shape[1] else np.take(z_np, idx_np, axis=1)
    np.multiply(cols, scale.numpy()[:, None], out=out, casting="same_kind")
    return out


def _quadratic_err(lower: np.ndarray, w: np.ndarray) -> torch.Tensor:
    """‖Lᵀ w‖² per column of a fresh C-ordered w (r, vb), by BLAS trmm on its transposed
    (Fortran-ordered) view, which it overwrites."""
    from scipy.linalg import blas

    wt = np.asfortranarray(w.T)  # (vb, r): no copy for a C-ordered w
    trmm = blas.dtrmm if wt.dtype == np.float64 else blas.strmm
    out = trmm(1.0, lower, wt, side=1, lower=1, overwrite_b=1)  # wᵀ L = (Lᵀ w)ᵀ
    return torch.from_numpy(np.einsum("ij,ij->i", out, out))


def _eigh(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigendecomposition; LAPACK's syevd through NumPy on CPU (measured 2-4x faster
    than torch.linalg.eigh there for n ~ 1,000), torch elsewhere."""
    if k.device.type == "cpu":
        w, v = np.linalg.eigh(k.detach().numpy())
        return torch.from_numpy(w), torch.from_numpy(v)
    return torch.linalg.eigh(k)


def score_predictions(
    pred: torch.Tensor,
    obs: torch.Tensor,
    scoring: str = "corr",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-voxel Pearson r or R² of predictions (n, v) with observations (n, v) over stimuli.

    ``weights`` (B, n) (e.g. bootstrap draw counts) gives B weighted scores at once, (B, v):
    a stimulus drawn c times counts c times, with all sums as matrix products. R² is
    ``1 − Σ(o − p)² / Σ(o − ō)²`` (scikit-learn's ``r2_score`` per output).

    Examples
    --------
    >>> import torch
    >>> o = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    >>> score_predictions(o * 2, o, "corr").tolist(), score_predictions(o, o, "r2").tolist()
    ([1.0], [1.0])
    """
    check_choice("scoring", scoring, SCORINGS)
    single = weights is None
    w = torch.ones(1, pred.shape[0], dtype=pred.dtype, device=pred.device) if single else weights
    w = w.to(pred.dtype)
    sw = w.sum(1, keepdim=True)
    mo = (w @ obs) / sw
    so2 = (w @ (obs * obs)) / sw - mo * mo
    if scoring == "r2":
        d = obs - pred
        out = 1.0 - (w @ (d * d)) / sw / so2
    else:
        mp = (w @ pred) / sw
        sp2 = (w @ (pred * pred)) / sw - mp * mp
        cov = (w @ (pred * obs)) / sw - mp * mo
        out = cov / torch.sqrt(sp2 * so2)
    return out[0] if single else out


@dataclass
class EncodingResult:
    """Out-of-fold predictions and their scores.

    Attributes
    ----------
    predictions
        (n, v) prediction of every stimulus from the fold that held it out.
    scores
        (v,) per-voxel Pearson r or R² of the predictions with the responses.
    alphas
        (n_folds, v) penalty chosen per fold and voxel.
    folds
        Test indices of each fold.
    scoring
        ``"corr"`` or ``"r2"``.
    """

    predictions: torch.Tensor
    scores: torch.Tensor
    alphas: torch.Tensor
    folds: list[np.ndarray] = field(repr=False)
    scoring: str = "corr"

    @property
    def score(self) -> float:
        """Mean score over voxels (NaN voxels, e.g. constant ones, ignored)."""
        return float(torch.nanmean(self.scores))


def ridge_encoding(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    seed: int | None = 0,
    stratify: Sequence | None = None,
    folds: Sequence[Sequence[int]] | None = None,
    scoring: str = "corr",
    cv: str = "loo",
    form: str = "auto",
    voxel_block: int | None = None,
    device: torch.device | str | None = None,
) -> EncodingResult:
    """Cross-validated ridge encoding of responses ``y`` (n, v) from features ``x`` (n, p).

    Parameters
    ----------
    x : torch.Tensor
        (n stimuli, p features) layer activations (flattened), a tensor or array.
    y : torch.Tensor
        (n stimuli, v voxels / neurons) responses, same stimulus order.
    alphas : Sequence[float]
        Candidate ridge penalties; one is chosen per voxel and fold by ``cv`` on the training
        stimuli. Scale matters: penalties act on the raw feature Gram (its eigenvalues grow with
        p and with the features' variance).
    n_folds, seed, stratify
        Outer folds over stimuli (:func:`kfold_indices`); ignored when ``folds`` is given.
    folds : Sequence[Sequence[int]] | None
        Explicit test indices per fold (every stimulus exactly once).
    scoring : str
        ``"corr"`` (Pearson r) or ``"r2"`` of the out-of-fold predictions, per voxel.
    cv : str
        ``"loo"`` (exact efficient LOO, scikit-learn's ``RidgeCV``) or ``"gcv"``.
    form : str
        ``"auto"``, ``"primal"`` or ``"dual"`` (see :func:`ridge_cv_fit_predict`).
    voxel_block : int | None
        Voxels per block (bounds memory).
    device : torch.device | str | None
        Where to compute (default: ``x``'s device). Float32 inputs stay float32.

    Returns
    -------
    EncodingResult

    Examples
    --------
    >>> import torch
    >>> x, y = torch.randn(40, 6), torch.randn(40, 3)
    >>> res = ridge_encoding(x, y, n_folds=4, scoring="r2")
    >>> res.alphas.shape, len(res.folds)
    (torch.Size([4, 3]), 4)
    """
    check_choice("scoring", scoring, SCORINGS)
    x = _as_matrix("x", x, device)
    y = _as_matrix("y", y, x.device).to(x.dtype)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same stimuli (rows); got {x.shape[0]} and {y.shape[0]}"
        )
    n = x.shape[0]
    if folds is None:
        folds = kfold_indices(n, n_folds, seed=seed, stratify=stratify)
    else:
        folds = [np.asarray(f, dtype=np.intp).reshape(-1) for f in folds]
        cover = np.sort(np.concatenate(folds)) if folds else np.array([])
        if len(folds) < 2 or not np.array_equal(cover, np.arange(n)):
            raise ValueError(
                "folds must hold test indices of at least 2 folds covering every stimulus "
                f"(0..{n - 1}) exactly once"
            )
    check_choice("cv", cv, CV_KINDS)
    check_choice("form", form, FORMS)
    a_np = _check_alphas(alphas)
    preds = torch.empty_like(y)
    chosen = torch.empty(len(folds), y.shape[1], dtype=x.dtype, device=x.device)
    trains = [np.setdiff1d(np.arange(n), test) for test in folds]
    # dual form in every fold: one Gram of all stimuli, sliced and re-centred per fold
    # (saves the per-fold train and test Grams); centred first on the mean of all stimuli so
    # that the re-centring does not cancel digits
    shared = form == "dual" or (form == "auto" and all(x.shape[1] > len(t) for t in trains))
    if shared:
        xg = x - x.mean(0)
        gram = _mm(xg, xg.T)
        del xg
    for f, test in enumerate(folds):
        tr = torch.as_tensor(trains[f], device=x.device)
        te = torch.as_tensor(test, device=x.device)
        if shared:
            preds[te], chosen[f] = _ridge_cv(
                None, y[tr], None, a_np, cv, form, voxel_block, _fold_grams(gram, tr, te)
            )
        else:
            preds[te], chosen[f] = _ridge_cv(x[tr], y[tr], x[te], a_np, cv, form, voxel_block)
    scores = score_predictions(preds, y, scoring)
    return EncodingResult(preds, scores, chosen, list(folds), scoring)


def _fold_grams(gram: torch.Tensor, tr: torch.Tensor, te: torch.Tensor):
    """Train Gram and test-train Gram of features centred on the training mean, from the Gram
    G of all stimuli: (x_i − m)·(x_j − m) = G_ij − c_i − c_j + μ with c_j = m·x_j, μ = m·m."""
    g_tt = gram[tr][:, tr]
    g_st = gram[te][:, tr]
    c = g_tt.mean(0)
    mu = c.mean()
    kc = g_tt - c[None, :] - c[:, None] + mu
    kt = g_st - c[None, :] - g_st.mean(1, keepdim=True) + mu
    return kc, kt


def split_half_ceiling(
    half1: torch.Tensor, half2: torch.Tensor, scoring: str = "corr"
) -> torch.Tensor:
    """Per-voxel noise ceiling of an encoding score from two independent halves of the data.

    ``r`` = correlation over stimuli of the two halves' mean responses per voxel, corrected to the
    full data by Spearman–Brown, ``ρ = 2r / (1 + r)`` (the reliability of the full-data mean,
    clipped to [0, 1]). The ceiling is ``√ρ`` for ``scoring="corr"`` (the expected correlation of
    the noise-free response with the measured one) and ``ρ`` for ``"r2"`` (the explainable
    fraction of the variance).

    Examples
    --------
    >>> import torch
    >>> s = torch.randn(50, 4, dtype=torch.float64)
    >>> float(split_half_ceiling(s, s).mean())
    1.0
    """
    check_choice("scoring", scoring, SCORINGS)
    r = score_predictions(half1, half2, "corr")
    rho = (2.0 * r / (1.0 + r)).clamp(0.0, 1.0)
    return rho.sqrt() if scoring == "corr" else rho


def _as_matrix(name: str, a, device) -> torch.Tensor:
    t = torch.as_tensor(a.detach() if isinstance(a, torch.Tensor) else a, device=device)
    if not torch.is_floating_point(t):
        t = t.to(torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (stimuli, features) matrix; got {tuple(t.shape)}")
    # a finite sum has no NaN or inf terms (one reduction, no mask); else check entries
    # (the sum may also overflow)
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return t
