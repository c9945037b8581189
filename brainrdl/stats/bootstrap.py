"""Vectorised bootstrap of RDM comparisons over stimuli, subjects or both, on any device.

rsatoolbox draws one resample at a time, subsamples every RDM (duplicating rows and columns, with
the pairs of a stimulus with its own copy set to NaN and dropped) and compares the expanded vectors.
The expanded vector holds each original pair (p, q) exactly ``c_p * c_q`` times, where ``c`` counts
how often each stimulus was drawn, and never a pair of a stimulus with itself. So every statistic of
the expanded vectors is a *weighted* statistic of the original upper-triangle vectors with pair
weights ``w_pq = c_p c_q``.

- ``cosine`` / ``corr``: every needed sum (Σw, Σwx, Σwy, Σwx², Σwy², Σwxy for all layer × brain
  pairs) is a weighted moment, so all resamples at once are one matrix product of the draw counts
  against the stacked products. The weight matrix is never built: row ``p`` of the upper triangle
  contributes ``c_p (c_{p+1:} @ F_p)``, one GEMM per stimulus (float64).
- ``spearman`` / ``rho-a``: ranks of the expanded vectors are weighted ranks: one sort per vector up
  front, then per resample a gather of the weights into sorted order, a cumulative sum and a gather
  back (float32: integer weights make every rank a half-integer below 2**22, exact), followed by one
  batched float64 product for the weighted Pearson of the ranks.

Examples
--------
>>> import torch
>>> x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 7.0]])
>>> w = torch.ones(1, 6, dtype=torch.float64)
>>> round(weighted_compare(x, x, w, "corr").item(), 6)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from brainrdl.errors import InvalidArgumentError
from brainrdl.rsa.distances import n_conditions_from_length
from brainrdl.rsa.methods import COMPARISON_METHODS, FAST_BOOTSTRAP_METHODS
from brainrdl.validation import check_choice, check_device, check_scalar

#: comparison methods computed here as weighted statistics (others fall back to a loop)
FAST_METHODS = FAST_BOOTSTRAP_METHODS  # alias kept for existing imports
BOOTSTRAP_KINDS = ("stimuli", "subjects", "both")
#: float32 holds every integer below 2**24; ranks (half-integers) of totals below 2**22 are exact
_F32_EXACT_TOTAL = 2.0**22
#: bytes of rank work arrays per chunk of resamples: about the last-level cache (measured: 2-5x
#: faster than RAM-sized chunks at 92 conditions); a single resample may exceed it
_CACHE_BYTES = 3.2e7


def pair_weights(counts: torch.Tensor) -> torch.Tensor:
    """Weights ``c_p c_q`` of the upper-triangle pairs (p < q) for stimulus draw counts ``c``.

    Parameters
    ----------
    counts : torch.Tensor
        (B, n) number of times each of n stimuli was drawn in each of B resamples.

    Returns
    -------
    torch.Tensor
        (B, n (n - 1) / 2) weights in the row-major upper-triangle order of ``squareform``.

    Examples
    --------
    >>> import torch
    >>> pair_weights(torch.tensor([[2.0, 1.0, 0.0]])).tolist()
    [[2.0, 0.0, 0.0]]
    """
    n = counts.shape[-1]
    iu, ju = torch.triu_indices(n, n, offset=1, device=counts.device)
    return counts[..., iu] * counts[..., ju]


def _argsort(v: torch.Tensor) -> torch.Tensor:
    """Sort order of each row (ties in any order: ranks are tie-averaged afterwards)."""
    if v.device.type == "cpu":  # NumPy's introsort is several times faster than torch's on CPU
        return torch.from_numpy(np.argsort(v.detach().numpy(), axis=-1))
    return torch.argsort(v, dim=-1)


def _inverse(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation of each row: one scatter instead of a second sort."""
    k = order.shape[-1]
    pos = torch.arange(k, device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, pos)


def _tie_bounds(vs: torch.Tensor) -> torch.Tensor:
    """(V, 2, K) sorted positions of the first and last entry of each entry's tie group."""
    k = vs.shape[-1]
    pos = torch.arange(k, device=vs.device).expand_as(vs)
    new = torch.ones_like(vs, dtype=torch.bool)
    new[:, 1:] = vs[:, 1:] != vs[:, :-1]  # NaNs (weight 0) each open a group: harmless
    start = torch.where(new, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    last = torch.ones_like(new)
    last[:, :-1] = new[:, 1:]
    flipped = torch.where(last, pos, torch.full_like(pos, k)).flip(-1)
    end = flipped.cummin(dim=-1).values.flip(-1)
    return torch.stack([start, end], dim=1)


class _RankPlan:
    """Everything about the vectors ``v`` (V, K) that weighted ranks need, computed once.

    Per chunk of weight rows the ranks then cost a gather of the weights into each vector's sorted
    order, an in-place cumulative sum, a gather back and one subtraction: four passes over
    (B, V, K), in float32 when exact.
    """

    def __init__(self, v: torch.Tensor):
        n_v, k = v.shape
        order = _argsort(v).to(v.device)
        inverse = _inverse(order)
        vs = torch.gather(v, -1, order)
        ties = (vs[:, 1:] == vs[:, :-1]).any(-1)  # (V,) vectors with tied entries
        bounds = _tie_bounds(vs[ties]) if bool(ties.any()) else None
        # int32 indices: half the index traffic of int64 (index_select takes both)
        idx = torch.int32 if n_v * k < 2**31 else torch.int64
        self.shape = (n_v, k)
        self.order = order.to(idx).flatten()
        offsets = torch.arange(n_v, device=v.device)[:, None] * k
        self.inverse = (inverse + offsets).to(idx).flatten()
        self.tied = torch.nonzero(ties).flatten()
        if self.tied.numel():
            start, end = bounds[:, 0], bounds[:, 1]
            self.tied_order = order[self.tied].to(idx).flatten()
            self.first = start == 0
            self.before = (start - 1).clamp_(min=0)  # position just before the tie group
            self.end = end

    def centred(self, w: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """(B, V, K) tie-averaged ranks in the vectors expanded by ``w`` (B, K), minus ``shift``."""
        n_v, k = self.shape
        b = w.shape[0]
        cum = torch.index_select(w, 1, self.order).view(b, n_v, k)  # weights in sorted order
        cum.cumsum_(-1)  # weight up to and including each entry
        if self.tied.numel():
            c = cum[:, self.tied]
            lo = torch.gather(c, -1, self.before.expand(b, -1, -1))
            lo.masked_fill_(self.first, 0.0)
            hi = torch.gather(c, -1, self.end.expand(b, -1, -1))
            ws = torch.index_select(w, 1, self.tied_order).view(b, -1, k)
            # average rank of a tie group = (weight before it + weight through its end + 1) / 2;
            # stored plus (w - 1) / 2 so that the common step below recovers it
            cum[:, self.tied] = (lo + hi + 1.0) * 0.5 + (ws - 1.0) * 0.5
            del c, lo, hi, ws
        out = torch.index_select(cum.view(b, n_v * k), 1, self.inverse).view(b, n_v, k)
        del cum
        # no ties: rank = weight through the entry - (own weight - 1) / 2
        return out.sub_((w * 0.5 + (shift - 0.5)[:, None])[:, None, :])


def _integer_weights(w: torch.Tensor) -> bool:
    return float(w.sum(-1).max()) < _F32_EXACT_TOTAL and bool((w == w.round()).all())


def weighted_ranks(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Average ranks each entry of ``v`` would get in the vector expanded by integer weights ``w``.

    Parameters
    ----------
    v : torch.Tensor
        (V, K) vectors (NaN allowed where ``w`` is 0).
    w : torch.Tensor
        (B, K) weights (repeat counts); entries with weight 0 are absent from the expanded vector.

    Returns
    -------
    torch.Tensor
        (B, V, K) ranks (tie-averaged, as ``scipy.stats.rankdata``); meaningless where ``w == 0``.

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    >>> weighted_ranks(v, torch.tensor([[1.0, 2.0, 1.0]], dtype=torch.float64)).tolist()
    [[[4.0, 1.5, 3.0]]]
    """
    plan = _RankPlan(v)
    zero = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    wc = w.float() if _integer_weights(w) else w
    return plan.centred(wc, zero.to(wc.dtype)).to(w.dtype)


class _Kernel:
    """Comparison of fixed x (L, K) and y (S, K) under many weight rows, with setup done once.

    ``kernel(w)`` takes explicit pair weights (B, K); ``kernel.from_counts(c)`` takes stimulus draw
    counts (B, n) and never builds the (B, K) pair weights for ``cosine`` / ``corr``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, method: str, memory_budget: float = 2e8):
        check_choice("method", method, FAST_METHODS)
        self.method = method
        self.memory_budget = memory_budget
        self.n_l, self.n_s = x.shape[0], y.shape[0]
        self.k = x.shape[1]
        # pairs missing (NaN) in any vector are dropped, as rsatoolbox drops NaN entries
        self.valid = (torch.isfinite(x).all(0) & torch.isfinite(y).all(0)).to(x.dtype)
        self.valid_mask = None if bool(self.valid.all()) else self.valid
        x = torch.nan_to_num(x, nan=0.0) * self.valid
        y = torch.nan_to_num(y, nan=0.0) * self.valid
        if method in ("cosine", "corr"):
            if method == "corr":
                # shift-invariant: centring by the unweighted mean avoids cancellation later
                m = self.valid.sum().clamp(min=1.0)
                x = (x - (x.sum(-1, keepdim=True) / m)) * self.valid
                y = (y - (y.sum(-1, keepdim=True) / m)) * self.valid
            self.x, self.y = x, y
            n_rows = 1 + 2 * (self.n_l + self.n_s) + self.n_l * self.n_s
            self.n_rows = n_rows
            # the stacked products F (R, K) are kept when small, else rebuilt per block of pairs
            small = n_rows * self.k * 8 <= memory_budget
            self.features = self._features(0, self.k) if small else None
        else:
            self.x, self.y = x, y
            self.plan = _RankPlan(torch.cat([x, y]))
            # Σ w r² of a tie-free vector has a closed form; vectors with ties get it summed
            self.tied = self.plan.tied

    # -- cosine / corr: weighted moments -------------------------------------------------------

    def _features(self, a: int, b: int) -> torch.Tensor:
        """(R, b - a) rows [valid, x, y, x², y², x_l y_s] over pairs a:b."""
        x, y = self.x[:, a:b], self.y[:, a:b]
        xy = (x[:, None, :] * y[None, :, :]).reshape(-1, b - a)
        return torch.cat([self.valid[None, a:b], x, y, x * x, y * y, xy])

    def _block(self, a: int, b: int) -> torch.Tensor:
        return self.features[:, a:b] if self.features is not None else self._features(a, b)

    def _pairs_per_block(self) -> int:
        return max(1, int(self.memory_budget // (8 * self.n_rows * 2)))

    def _moments_from_weights(self, w: torch.Tensor) -> torch.Tensor:
        acc = torch.zeros(w.shape[0], self.n_rows, dtype=torch.float64, device=w.device)
        step = self._pairs_per_block()
        for a in range(0, self.k, step):
            b = min(self.k, a + step)
            acc.addmm_(w[:, a:b].to(torch.float64), self._block(a, b).T)
        return acc

    def _moments_from_counts(self, c: torch.Tensor) -> torch.Tensor:
        """Σ_{p<q} c_p c_q F_pq = Σ_p c_p (c_{p+1:} @ F_{p,p+1:}): a GEMM per triangle row."""
        n = c.shape[1]
        c = c.to(torch.float64)
        acc = torch.zeros(c.shape[0], self.n_rows, dtype=torch.float64, device=c.device)
        starts = [p * n - p * (p + 1) // 2 for p in range(n)]  # first pair (p, p + 1) of row p
        step = self._pairs_per_block()
        p = 0
        while p < n - 1:
            # a run of whole triangle rows whose features fit one block
            q, a = p, starts[p]
            while q < n - 1 and (q == p or starts[q + 1] - a <= step):
                q += 1
            block = self._block(a, starts[q - 1] + n - q)
            for r in range(p, q):
                seg = block[:, starts[r] - a : starts[r] - a + n - r - 1]
                acc.addmm_(c[:, r + 1 :] * c[:, r : r + 1], seg.T)
            p = q
        return acc

    def _from_moments(self, acc: torch.Tensor) -> torch.Tensor:
        n_l, n_s = self.n_l, self.n_s
        total = acc[:, 0]
        sx, sy = acc[:, 1 : 1 + n_l], acc[:, 1 + n_l : 1 + n_l + n_s]
        o = 1 + n_l + n_s
        sxx, syy = acc[:, o : o + n_l], acc[:, o + n_l : o + n_l + n_s]
        sxy = acc[:, o + n_l + n_s :].reshape(-1, n_l, n_s)
        if self.method == "corr":
            mx, my = sx / total[:, None], sy / total[:, None]
            sxy = sxy - total[:, None, None] * mx[:, :, None] * my[:, None, :]
            sxx = sxx - total[:, None] * mx * mx
            syy = syy - total[:, None] * my * my
        return sxy / torch.sqrt(sxx[:, :, None] * syy[:, None, :])

    # -- spearman / rho-a: weighted ranks ------------------------------------------------------

    def _rank_sums(self, w: torch.Tensor, total: torch.Tensor, exact: bool):
        """Σ w r_x r_y (B, L, S) and, for tied vectors, Σ w r² (B, T) of the centred ranks."""
        n_l = self.n_l
        wr = w.float() if exact else w.to(torch.float64)
        # ranks once per resample and vector, centred on the mean rank (N + 1) / 2
        ranks = self.plan.centred(wr, ((total + 1.0) * 0.5).to(wr.dtype))
        w64 = w.to(torch.float64)
        var_tied = None
        if self.method == "spearman" and self.tied.numel():
            rt = ranks[:, self.tied].to(torch.float64)
            var_tied = torch.einsum("btk,bk,btk->bt", rt, w64, rt)
            del rt
        ranks = ranks.to(torch.float64)  # the sums below are not exact in float32
        ryw = ranks[:, n_l:] * w64[:, None, :]  # the weights go with the S brain vectors (S < L)
        return torch.bmm(ranks[:, :n_l], ryw.transpose(1, 2)), var_tied

    def _rank_finish(self, sxy, var_tied, total, dup) -> torch.Tensor:
        """Normalise Σ w r_x r_y by the rank variances (spearman) or (N³ - N) / 12 (rho-a)."""
        if self.method == "rho-a":
            return sxy * 12.0 / (total**3 - total)[:, None, None]
        # Σ w (r - m)² over the expanded vector: for a vector without ties only the duplicates tie,
        # so it is (N³ - N) / 12 - Σ_k (w_k³ - w_k) / 12 (the tie-corrected rank variance)
        ss = ((total**3 - total) - dup) / 12.0  # (B,)
        var = ss[:, None].expand(-1, self.n_l + self.n_s).clone()
        if var_tied is not None:
            var[:, self.tied] = var_tied
        sxx, syy = var[:, : self.n_l], var[:, self.n_l :]
        return sxy / torch.sqrt(sxx[:, :, None] * syy[:, None, :])

    def _rank_compare(self, w: torch.Tensor) -> torch.Tensor:
        w = (w * self.valid).to(torch.float64)
        total = w.sum(-1)  # (B,) length of the expanded vectors
        dup = (w**3 - w).sum(-1)
        sxy, var_tied = self._rank_sums(w, total, _integer_weights(w))
        return self._rank_finish(sxy, var_tied, total, dup)

    def _rank_from_counts(self, counts: torch.Tensor) -> torch.Tensor:
        c = counts.to(torch.float64)
        exact = bool((c == c.round()).all())
        if bool(self.valid.all()):
            # N = Σ_{p<q} c_p c_q and Σ (w³ - w) in closed form from the counts: O(n) a resample
            s1, s2 = c.sum(-1), (c * c).sum(-1)
            c3 = c**3
            total = (s1 * s1 - s2) * 0.5
            dup = (c3.sum(-1) ** 2 - (c3 * c3).sum(-1)) * 0.5 - total
        else:
            total = torch.cat([(pair_weights(c[a : a + 256]) * self.valid).sum(-1)
                               for a in range(0, c.shape[0], 256)])  # fmt: skip
            dup = None
        exact = exact and float(total.max()) < _F32_EXACT_TOTAL
        cw = c.float() if exact else c  # the weights c_p c_q themselves are exact in float32
        # chunks of resamples small enough for the work arrays to stay in cache
        v, k = self.n_l + self.n_s, self.k
        per_sample = 16 * v * k + 24 * k
        chunk = int(max(1, min(self.memory_budget, _CACHE_BYTES) // per_sample))
        iu, ju = torch.triu_indices(c.shape[1], c.shape[1], offset=1, device=c.device)
        sxy, tied, dups = [], [], []
        for a in range(0, c.shape[0], chunk):
            cc = cw[a : a + chunk]
            w = cc[:, iu] * cc[:, ju]
            if self.valid_mask is not None:
                w = w * self.valid_mask.to(w.dtype)
            if dup is None:
                w64 = w.to(torch.float64)
                dups.append((w64**3 - w64).sum(-1))
            s, t = self._rank_sums(w, total[a : a + chunk], exact)
            sxy.append(s)
            tied.append(t)
        var_tied = torch.cat(tied) if tied[0] is not None else None
        dup = torch.cat(dups) if dup is None else dup
        return self._rank_finish(torch.cat(sxy), var_tied, total, dup)

    # -- entry points --------------------------------------------------------------------------

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """(B, L, S) similarities under pair weights ``w`` (B, K)."""
        if self.method in ("cosine", "corr"):
            return self._from_moments(self._moments_from_weights(w * self.valid))
        return self._rank_compare(w)

    def from_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """(B, L, S) similarities of the resamples with stimulus draw counts ``counts`` (B, n)."""
        if self.method in ("cosine", "corr"):
            return self._from_moments(self._moments_from_counts(counts))
        return self._rank_from_counts(counts)


def weighted_compare(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, method: str = "corr"):
    """Compare every row of ``x`` with every row of ``y`` under each row of pair weights ``w``.

    With integer weights this equals ``rsatoolbox.rdm.compare`` on the vectors expanded by the
    weights (each entry repeated ``w`` times, weight-0 entries dropped).

    Parameters
    ----------
    x, y : torch.Tensor
        (L, K) and (S, K) RDM vectors; pairs that are NaN in any vector are dropped.
    w : torch.Tensor
        (B, K) non-negative pair weights (one resample per row).
    method : str
        One of ``"cosine"``, ``"corr"``, ``"spearman"``, ``"rho-a"``.

    Returns
    -------
    torch.Tensor
        (B, L, S) similarities.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    >>> y = torch.tensor([[1.0, 3.0, 2.0]], dtype=torch.float64)
    >>> w = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    >>> round(weighted_compare(x, y, w, "spearman").item(), 6)
    0.5
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64, device=x.device)
    return _Kernel(x, y, method)(torch.as_tensor(w, dtype=torch.float64, device=x.device))


@dataclass
class BootstrapResult:
    """Bootstrap distribution of the similarities.

    Attributes
    ----------
    samples
        (n_bootstrap, L, S) similarity of each layer row with each brain RDM per resample (NaN
        for resamples with fewer than 3 distinct stimuli, as rsatoolbox does).
    rdm_weights
        (n_bootstrap, S) how often each brain RDM is in each resample (1 when subjects are not
        resampled); the resampled mean similarity is the weighted mean over S.
    """

    samples: torch.Tensor
    rdm_weights: torch.Tensor

    def mean_over_rdms(self) -> torch.Tensor:
        """(n_bootstrap, L) weighted mean over the brain RDMs, as rsatoolbox's evaluation."""
        w = self.rdm_weights[:, None, :]
        return (self.samples * w).sum(-1) / w.sum(-1)


def bootstrap_compare(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    method: str = "corr",
    n_bootstrap: int = 1000,
    bootstrap: str = "stimuli",
    rdm_groups: np.ndarray | list | None = None,
    pattern_groups: np.ndarray | list | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    memory_budget: float = 2e8,
    pattern_counts: torch.Tensor | None = None,
    group_counts: torch.Tensor | None = None,
    progress: bool | None = None,
) -> BootstrapResult:
    """Bootstrap the comparison of layer RDM vectors ``x`` with brain RDM vectors ``y``.

    Parameters
    ----------
    x : torch.Tensor | np.ndarray
        (L, K) model (layer) RDM vectors, upper triangle of n conditions (K = n (n - 1) / 2).
    y : torch.Tensor | np.ndarray
        (S, K) brain RDM vectors.
    method : str
        Any ``brainrdl.compare`` method; ``cosine``, ``corr``, ``spearman`` and ``rho-a`` are
        vectorised, the others loop over resamples through ``rsatoolbox.rdm.compare``.
    n_bootstrap : int
        Number of resamples.
    bootstrap : str
        ``"stimuli"`` (rsatoolbox's ``bootstrap_sample_pattern``), ``"subjects"``
        (``bootstrap_sample_rdm``) or ``"both"`` (``bootstrap_sample``).
    rdm_groups : np.ndarray | list | None
        (S,) label per brain RDM: subjects are resampled as whole groups (all sessions of a subject
        together). Default: each RDM its own group.
    pattern_groups : np.ndarray | list | None
        (n,) label per stimulus, resampled as whole groups. Default: each stimulus alone.
    seed : int | None
        Seed of the torch generator (on ``device``).
    device : torch.device | str | None
        Where to compute; default: the device of ``x`` if a tensor, else CPU.
    chunk_size : int | None
        Resamples per batched comparison; default from ``memory_budget`` (bytes).
    pattern_counts, group_counts : torch.Tensor | None
        Explicit draw counts (n_bootstrap, n_pattern_groups) / (n_bootstrap, n_rdm_groups)
        instead of random draws: to replay rsatoolbox's resamples in tests.
    progress : bool | None
        tqdm bar over chunks of resamples: True, False, or None (only on a terminal).

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 45, dtype=torch.float64)
    >>> y = torch.rand(3, 45, dtype=torch.float64)
    >>> res = bootstrap_compare(x, y, n_bootstrap=16, seed=0)
    >>> tuple(res.mean_over_rdms().shape)
    (16, 2)
    """
    check_choice("bootstrap", bootstrap, BOOTSTRAP_KINDS)
    n_bootstrap = check_scalar("n_bootstrap", n_bootstrap, int, min_val=1)
    seed = check_scalar("seed", seed, int, allow_none=True)
    check_device("device", device)
    if device is None:
        device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    x = torch.as_tensor(x, dtype=torch.float64, device=device)
    y = torch.as_tensor(y, dtype=torch.float64, device=device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InvalidArgumentError(
            f"x and y must be (L, K) and (S, K) RDM vectors of equal K; got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    n_cond = _n_from_length(x.shape[1])
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))

    p_index, n_pgroups = _group_index(pattern_groups, n_cond, "pattern_groups", device)
    r_index, n_rgroups = _group_index(rdm_groups, y.shape[0], "rdm_groups", device)
    resample_stimuli = bootstrap in ("stimuli", "both")
    resample_rdms = bootstrap in ("subjects", "both")

    if resample_rdms:
        if group_counts is None:
            draws = torch.randint(n_rgroups, (n_bootstrap, n_rgroups), generator=gen, device=device)
            group_counts = _counts(draws, n_rgroups)
        rdm_weights = group_counts.to(device, torch.float64)[:, r_index]
    else:
        rdm_weights = torch.ones(n_bootstrap, y.shape[0], dtype=torch.float64, device=device)

    if not resample_stimuli:
        sims = compare_all_pairs(x, y, method)
        samples = sims.expand(n_bootstrap, -1, -1).clone()
        return BootstrapResult(samples, rdm_weights)

    if pattern_counts is None:
        draws = torch.randint(n_pgroups, (n_bootstrap, n_pgroups), generator=gen, device=device)
        pattern_counts = _counts(draws, n_pgroups)
    pattern_counts = pattern_counts.to(device, torch.float64)
    # rsatoolbox marks a resample with fewer than 3 distinct pattern groups as NaN
    too_few = (pattern_counts > 0).sum(-1) < 3
    stim_counts = pattern_counts[:, p_index]  # (B, n)

    if method in FAST_METHODS:
        kernel = _Kernel(x, y, method, memory_budget)
        if chunk_size is None:
            # corr/cosine: one pass over the data for all resamples; rank methods cost per
            # resample, so chunks of them let the progress bar move without extra work
            chunk_size = n_bootstrap if method in ("cosine", "corr") else 50
        compute = kernel.from_counts
    else:
        if chunk_size is None:
            chunk_size = int(max(1, min(n_bootstrap, memory_budget // (16 * x.shape[1]))))

        def compute(counts: torch.Tensor) -> torch.Tensor:
            return _loop_compare(x, y, pair_weights(counts), method)

    starts = range(0, n_bootstrap, chunk_size)
    # progress=None: tqdm shows the bar only on a terminal
    bar = tqdm(starts, desc=f"bootstrap ({method})", unit="chunk",
               disable=None if progress is None else not progress)  # fmt: skip
    out = [compute(stim_counts[a : a + chunk_size]) for a in bar]
    samples = torch.cat(out)
    samples[too_few] = float("nan")
    return BootstrapResult(samples, rdm_weights)


def percentile_ci(samples: torch.Tensor | np.ndarray, ci: float = 0.95) -> tuple[np.ndarray, ...]:
    """Percentile interval over the first axis, ignoring NaN resamples.

    Examples
    --------
    >>> import numpy as np
    >>> low, high = percentile_ci(np.arange(101.0)[:, None], ci=0.9)
    >>> round(float(low[0]), 6), round(float(high[0]), 6)
    (5.0, 95.0)
    """
    ci = check_scalar("ci", ci, float, min_val=0.0, max_val=1.0, include_min=False,
                      include_max=False)
    arr = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
    alpha = (1.0 - ci) / 2.0
    return np.nanquantile(arr, alpha, axis=0), np.nanquantile(arr, 1.0 - alpha, axis=0)


def compare_all_pairs(x: torch.Tensor, y: torch.Tensor, method: str) -> torch.Tensor:
    """(1, L, S) comparison of every vector in x with every vector in y, on all pairs that are
    finite in every vector."""
    valid = torch.isfinite(x).all(0) & torch.isfinite(y).all(0)
    w = valid.to(torch.float64)[None]
    if method in FAST_METHODS:
        return weighted_compare(x, y, w, method)
    return _loop_compare(x, y, w, method)


def _loop_compare(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, method: str) -> torch.Tensor:
    """Fallback for methods without a weighted form (tau-a, *_cov): expand each resample, compare.

    Uses ``brainrdl.rsa.comparison.compare_vectors`` (on the device); rsatoolbox for the rest.
    """
    from brainrdl.rsa.comparison import compare_vectors

    out = torch.empty(w.shape[0], x.shape[0], y.shape[0], dtype=torch.float64, device=x.device)
    for b, wb in enumerate(w.round().long()):
        rep = torch.repeat_interleave(torch.arange(wb.numel(), device=x.device), wb)
        if method in COMPARISON_METHODS:
            out[b] = compare_vectors(x[:, rep], y[:, rep], method)
        else:
            from rsatoolbox.rdm import compare as rsa_compare

            sim = rsa_compare(x[:, rep].cpu().numpy(), y[:, rep].cpu().numpy(), method=method)
            out[b] = torch.as_tensor(sim, device=x.device)
    return out


def _counts(draws: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.zeros(draws.shape[0], n, dtype=torch.float64, device=draws.device)
    return counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def _group_index(
    groups: np.ndarray | list | None, n: int, name: str, device: torch.device | str
) -> tuple[torch.Tensor, int]:
    if groups is None:
        return torch.arange(n, device=device), n
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise InvalidArgumentError(
            f"{name} must have one label per item ({n}); got shape {groups.shape}")
    # np.unique sorts the labels, as rsatoolbox does for its descriptor values
    _, index = np.unique(groups, return_inverse=True)
    return torch.as_tensor(index.reshape(-1), device=device), int(index.max()) + 1


def _n_from_length(k: int) -> int:
    n = n_conditions_from_length(k)
    if n is None:
        raise InvalidArgumentError(
            f"RDM vectors of length {k} are not the upper triangle of a square matrix")
    return n
