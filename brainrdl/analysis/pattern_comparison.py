"""Layer × region tables for pattern metrics: CKA, cross-validated ridge encoding, Procrustes.

:func:`brainrdl.compare_layers` sends ``metric="cka" | "encoding" | "procrustes"`` here. These
metrics compare the layer's and the brain's *patterns* (stimuli × features and stimuli × voxels or
neurons, stimulus-matched), not RDMs; the table is the one of RSA (``layer``, ``region``,
``similarity``, ``ci_low``, ``ci_high``, ``se``, ``noise_ceiling_low`` / ``_high``, ``best``,
``n_rdms`` — here the number of subjects' pattern sets —, ``method``) plus ``metric``:

- ``"cka"``: linear CKA (``debiased=True`` in ``metric_kwargs`` for the unbiased-HSIC form);
  no noise ceiling (NaN).
- ``"encoding"``: mean over voxels of the cross-validated ridge score (Pearson r or R², see
  :func:`brainrdl.stats.encoding.ridge_encoding`); the noise ceiling is the split-half ceiling
  (Spearman–Brown corrected, :func:`brainrdl.stats.encoding.split_half_ceiling`) when the brain
  ``Dataset`` holds repeated measurements of the stimuli (its ``stimulus`` descriptor repeats;
  the metric then uses the mean pattern per stimulus), else NaN.
- ``"procrustes"``: ``similarity`` is the cosine of the angular Procrustes distance (higher is
  closer, so the best layer is the most similar), and the column ``distance`` holds the angle in
  radians; no noise ceiling (NaN).

Several subjects per region (a list or dict of ``Dataset``\\ s, each one subject's stimuli ×
channels) are averaged, as the RDMs of a region are. The bootstrap resamples stimuli (the metric
is recomputed on each resample; for encoding the held-out predictions are resampled, the fits are
not repeated), subjects, or both, with the same seed for every region and layer. Duplicated
stimuli raise CKA and the Procrustes similarity of every stimulus resample, so for those two the
resamples are shifted to have the full-sample estimate as their mean before the percentile
interval is taken (the spread is the bootstrap's; see ``_remove_resampling_bias``).

Examples
--------
>>> import numpy as np, torch, rsatoolbox
>>> rng = np.random.default_rng(0)
>>> brain = {"IT": rsatoolbox.data.Dataset(rng.standard_normal((20, 30)))}
>>> layers = {"a": torch.randn(20, 8), "b": torch.randn(20, 16)}
>>> t = compare_patterns(layers, brain, metric="cka")
>>> list(t["layer"]), set(t["metric"])
(['a', 'b'], {'cka'})
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from brainrdl.stats.bootstrap import BOOTSTRAP_KINDS, percentile_ci
from brainrdl.stats.cka import cka
from brainrdl.stats.encoding import ridge_encoding, score_predictions, split_half_ceiling
from brainrdl.stats.procrustes import procrustes_similarity, shape_factor
from brainrdl.validation import check_choice

__all__ = ["PATTERN_METRICS", "compare_patterns", "layer_patterns"]

PATTERN_METRICS = ("cka", "encoding", "procrustes")
_METRIC_KWARGS = {
    "cka": {"debiased"},
    "encoding": {"alphas", "n_folds", "stratify", "folds", "scoring", "cv", "form", "voxel_block"},
    "procrustes": {"alpha"},
}


def compare_patterns(
    layers,
    brain,
    *,
    metric: str = "cka",
    stimuli=None,
    layer_names: str | Sequence[str] | None = None,
    stimulus_ids: Sequence | None = None,
    n_bootstrap: int = 0,
    bootstrap: str = "stimuli",
    ci: float = 0.95,
    seed: int | None = None,
    device: torch.device | str | None = None,
    per_subject: bool = False,
    pattern_descriptor: str | None = None,
    metric_kwargs: Mapping | None = None,
    extract_kwargs: Mapping | None = None,
) -> pd.DataFrame:
    """Compare layer patterns with brain patterns by CKA, ridge encoding or Procrustes.

    Parameters
    ----------
    layers
        Mapping layer name → (stimuli, features...) tensor or array (trailing dims flattened),
        or a ``torch.nn.Module`` with ``stimuli`` and ``layer_names`` (activations are tapped).
    brain
        Mapping region → rsatoolbox ``Dataset`` (stimuli × channels), or → a list / dict of
        ``Dataset``\\ s (one per subject); a single ``Dataset`` is region ``"brain"``. With a
        ``stimulus`` observation descriptor, the layer rows are matched to it through
        ``stimulus_ids``; repeated stimuli are averaged (and give the split-half ceiling of
        encoding). Without one, row i of the Dataset is stimulus i of the layers.
    metric : str
        ``"cka"``, ``"encoding"`` or ``"procrustes"``.
    stimuli, layer_names
        The stimuli (tensor or DataLoader) and module paths when ``layers`` is a model.
    stimulus_ids : Sequence | None
        Labels of the layers' stimuli, in their order (default 0..n-1).
    n_bootstrap, bootstrap, ci, seed
        Resamples (0: NaN CIs), what to resample (``"stimuli"``, ``"subjects"``, ``"both"``),
        coverage and seed, as :func:`brainrdl.compare_layers`.
    device : torch.device | str | None
        Where to compute (default CPU).
    per_subject : bool
        Add one row per layer × region × subject (column ``subject``; pooled rows ``"all"``).
    pattern_descriptor : str | None
        Observation descriptor of the brain Datasets whose values are resampled as whole groups
        (e.g. image category) in the stimulus bootstrap.
    metric_kwargs : Mapping | None
        Options of the metric: ``debiased`` (CKA); ``alphas``, ``n_folds``, ``stratify``,
        ``folds``, ``scoring``, ``cv``, ``form``, ``voxel_block`` (encoding, see
        :func:`brainrdl.stats.encoding.ridge_encoding`; folds seeded with ``seed``);
        ``alpha`` (Procrustes partial whitening, 1 = none).
    extract_kwargs : Mapping | None
        ``batch_size`` and ``reduction`` for tapping a model.

    Returns
    -------
    pandas.DataFrame
        One row per layer × region (× subject), columns as described in the module docstring.

    Examples
    --------
    >>> import numpy as np, torch, rsatoolbox
    >>> rng = np.random.default_rng(1)
    >>> x = rng.standard_normal((30, 10))
    >>> brain = rsatoolbox.data.Dataset(x @ rng.standard_normal((10, 25)))
    >>> t = compare_patterns({"good": torch.tensor(x), "noise": torch.randn(30, 10)}, brain,
    ...                      metric="encoding", n_bootstrap=50, seed=0,
    ...                      metric_kwargs={"alphas": [0.1, 10.0]})
    >>> t.loc[t["best"], "layer"].tolist(), bool((t["ci_low"] <= t["ci_high"]).all())
    (['good'], True)
    """
    check_choice("metric", metric, PATTERN_METRICS)
    check_choice("bootstrap", bootstrap, BOOTSTRAP_KINDS)
    if (not isinstance(n_bootstrap, numbers.Integral) or isinstance(n_bootstrap, bool)
            or n_bootstrap < 0):  # fmt: skip
        raise ValueError(f"n_bootstrap must be a non-negative int; got {n_bootstrap!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    kwargs = dict(metric_kwargs or {})
    unknown = set(kwargs) - _METRIC_KWARGS[metric]
    if unknown:
        raise ValueError(f"metric_kwargs {sorted(unknown)} do not apply to metric={metric!r}; "
                         f"expected some of {sorted(_METRIC_KWARGS[metric])}")  # fmt: skip
    device = torch.device(device) if device is not None else torch.device("cpu")
    names, feats, ids = layer_patterns(layers, stimuli, layer_names, stimulus_ids, device,
                                       extract_kwargs)  # fmt: skip
    regions = _regions(brain)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))
    rows = []
    for region, subjects in regions.items():
        data = [_subject_patterns(ds, ids, feats[0].shape[0], region, sname, pattern_descriptor,
                                  device) for sname, ds in subjects.items()]  # fmt: skip
        order = data[0]["rows"]
        for d in data[1:]:
            if not np.array_equal(d["rows"], order):
                raise ValueError(
                    f"region {region!r}: the subjects' Datasets must hold the same set of stimuli"
                )
        xs = [f[torch.as_tensor(order, device=device)] for f in feats]
        n = len(order)
        if n < 4:
            raise ValueError(f"region {region!r}: pattern metrics need at least 4 stimuli; got {n}")
        # the same resamples for every region (regenerated from the seed)
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))
        stim_idx, subj_w = _draws(n_bootstrap, bootstrap, data[0]["groups"], len(data), gen,
                                  device)  # fmt: skip
        sims, samples, ceilings = _evaluate(metric, xs, data, kwargs, seed, stim_idx)
        if n_bootstrap > 0 and samples is None:  # subjects only: the full stimulus set each time
            samples = sims.expand(n_bootstrap, -1, -1)
        s_w = subj_w
        means = sims.mean(1)  # (L,)
        shift = metric != "encoding" and stim_idx is not None
        if samples is not None:
            if s_w is None:
                pooled = samples.nanmean(-1)
            else:
                w = s_w[:, None, :]
                pooled = (samples * w).nansum(-1) / w.sum(-1)
            low, high, se = _interval(pooled, means, shift, ci)
        else:
            low = high = se = np.full(len(names), np.nan)
        nc = float(np.nanmean(ceilings)) if np.isfinite(ceilings).any() else np.nan
        best = _best(means)
        for i, name in enumerate(names):
            rows.append(_row(metric, name, region, float(means[i]), low[i], high[i], se[i], nc,
                             nc, i == best, len(data), "all", kwargs))  # fmt: skip
        if per_subject:
            for s, sname in enumerate(subjects):
                sub = sims[:, s]
                if samples is not None and bootstrap == "stimuli":
                    lo, hi, sse = _interval(samples[:, :, s], sub, shift, ci)
                else:
                    lo = hi = sse = np.full(len(names), np.nan)
                b = _best(sub)
                for i, name in enumerate(names):
                    rows.append(_row(metric, name, region, float(sub[i]), lo[i], hi[i], sse[i],
                                     float(ceilings[s]), float(ceilings[s]), i == b, 1,
                                     str(sname), kwargs))  # fmt: skip
    table = pd.DataFrame(rows)
    if not per_subject:
        table = table.drop(columns="subject")
    if metric != "procrustes":
        table = table.drop(columns="distance")
    return table


def _interval(samples: torch.Tensor, point: torch.Tensor, shift: bool, ci: float):
    """Percentile interval and standard error of bootstrap ``samples`` (B, L) around ``point``
    (L,); ``shift`` removes the resampling bias first (see :func:`_remove_resampling_bias`)."""
    if shift:
        samples = _remove_resampling_bias(samples, point)
    low, high = percentile_ci(samples, ci)
    return low, high, np.nanstd(samples.cpu().numpy(), axis=0)


def _best(values: torch.Tensor) -> int:
    """Index of the largest finite value, or -1 when none is finite."""
    return int(np.nanargmax(values.cpu().numpy())) if torch.isfinite(values).any() else -1


def _remove_resampling_bias(samples: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Shift (B, L) resampled values so that their mean is the full-sample estimate (L,).

    A stimulus resample repeats about a third of the stimuli; the copies of a stimulus align
    perfectly in both patterns, which raises CKA and the Procrustes similarity of every resample
    (rsatoolbox drops such self-pairs from RDM comparisons for the same reason). The spread of the
    resamples is kept and their mean bias removed before the percentiles are taken.
    """
    bias = torch.nanmean(samples, dim=0) - estimate.to(samples)
    return samples - bias


def _row(metric, layer, region, sim, low, high, se, nc_low, nc_high, best, n, subject, kwargs):
    method = {"cka": "debiased" if kwargs.get("debiased") else "linear",
              "encoding": f"ridge-{kwargs.get('scoring', 'corr')}",
              "procrustes": f"angular(alpha={kwargs.get('alpha', 1.0)})"}[metric]  # fmt: skip
    return {"layer": layer, "region": region, "similarity": sim, "ci_low": float(low),
            "ci_high": float(high), "se": float(se), "noise_ceiling_low": nc_low,
            "noise_ceiling_high": nc_high, "best": bool(best), "n_rdms": int(n),
            "method": method, "metric": metric, "subject": subject,
            "distance": float(np.arccos(np.clip(sim, -1.0, 1.0)))}  # fmt: skip


def _evaluate(metric, xs, data, kwargs, seed, stim_idx):
    """(L, S) similarities, (B, L, S) bootstrap samples or None, (S,) noise ceilings."""
    n_l, n_s = len(xs), len(data)
    ys = [d["y"] for d in data]
    device = ys[0].device
    sims = torch.empty(n_l, n_s, dtype=torch.float64, device=device)
    b = 0 if stim_idx is None else len(stim_idx)
    samples = None if stim_idx is None else torch.empty(b, n_l, n_s, dtype=torch.float64,
                                                        device=device)  # fmt: skip
    ceilings = np.full(n_s, np.nan)
    if metric == "encoding":
        scoring = kwargs.get("scoring", "corr")
        enc = {k: v for k, v in kwargs.items() if k != "scoring"}
        enc.setdefault("seed", 0 if seed is None else seed)
        for s, d in enumerate(data):
            if d["halves"] is not None:
                ceilings[s] = float(torch.nanmean(split_half_ceiling(*d["halves"], scoring)))
            for i, x in enumerate(xs):
                res = ridge_encoding(x, ys[s].to(x.dtype), scoring=scoring, **enc)
                sims[i, s] = res.score
                if stim_idx is not None:
                    samples[:, i, s] = _resampled_scores(res.predictions, ys[s].to(x.dtype),
                                                         scoring, stim_idx)  # fmt: skip
        return sims, samples, ceilings
    if metric == "cka":
        debiased = bool(kwargs.get("debiased", False))
        fn = lambda a, c: cka(a, c, debiased=debiased)  # noqa: E731
    else:
        alpha = float(kwargs.get("alpha", 1.0))
        fn = lambda a, c: procrustes_similarity(a, c, alpha=alpha)  # noqa: E731
    # rotation-invariant metrics: each pattern reduced once to ≤ n columns (a Gram factor)
    fx = [shape_factor(x - x.mean(0)) for x in xs]
    fy = [shape_factor(y.to(torch.float64) - y.to(torch.float64).mean(0)) for y in ys]
    for i, x in enumerate(fx):
        for s, y in enumerate(fy):
            sims[i, s] = fn(x, y.to(x.dtype))
            if stim_idx is not None:
                samples[:, i, s] = _resampled_metric(fn, x, y.to(x.dtype), stim_idx)
    return sims, samples, ceilings


def _resampled_metric(fn, x, y, stim_idx, budget: float = 5e7) -> torch.Tensor:
    """fn on every resample of the rows (B lists of indices), batched in chunks."""
    out = torch.empty(len(stim_idx), dtype=torch.float64, device=x.device)
    if isinstance(stim_idx, torch.Tensor):  # equal-length resamples: batched
        per = stim_idx.shape[1] * (x.shape[1] + y.shape[1])
        chunk = max(1, int(budget // max(per, 1)))
        for a in range(0, len(stim_idx), chunk):
            idx = stim_idx[a : a + chunk]
            out[a : a + chunk] = fn(x[idx], y[idx]).to(torch.float64)
    else:
        for j, idx in enumerate(stim_idx):
            out[j] = fn(x[idx], y[idx])
    too_few = torch.tensor([len(torch.unique(i)) < 3 for i in stim_idx], device=x.device)
    return out.masked_fill(too_few, float("nan"))


def _resampled_scores(pred, obs, scoring, stim_idx) -> torch.Tensor:
    """Mean-over-voxels score of the held-out predictions on every stimulus resample."""
    n = obs.shape[0]
    counts = torch.zeros(len(stim_idx), n, dtype=obs.dtype, device=obs.device)
    for j, idx in enumerate(stim_idx):
        counts[j].index_add_(0, idx, torch.ones(len(idx), dtype=obs.dtype, device=obs.device))
    out = torch.empty(len(stim_idx), dtype=torch.float64, device=obs.device)
    chunk = max(1, int(2e7 // max(obs.shape[1], 1)))
    for a in range(0, len(stim_idx), chunk):
        sc = score_predictions(pred, obs, scoring, counts[a : a + chunk])
        out[a : a + chunk] = torch.nanmean(sc, dim=1).to(torch.float64)
    out[(counts > 0).sum(1) < 3] = float("nan")
    return out


def _draws(n_bootstrap, bootstrap, groups, n_subjects, gen, device):
    """Stimulus index resamples ((B, n) tensor, or B index tensors for grouped stimuli) and
    (B, S) subject weights (None when subjects are not resampled)."""
    if n_bootstrap == 0:
        return None, None
    stim_idx = subj_w = None
    if bootstrap in ("subjects", "both"):
        draws = torch.randint(n_subjects, (n_bootstrap, n_subjects), generator=gen, device=device)
        subj_w = torch.zeros(n_bootstrap, n_subjects, dtype=torch.float64, device=device)
        subj_w.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    n = len(groups)
    if bootstrap in ("stimuli", "both"):
        labels, index = np.unique(groups, return_inverse=True)
        if len(labels) == n:  # each stimulus its own group
            stim_idx = torch.randint(n, (n_bootstrap, n), generator=gen, device=device)
        else:
            members = [torch.as_tensor(np.flatnonzero(index == g), device=device)
                       for g in range(len(labels))]  # fmt: skip
            draws = torch.randint(len(labels), (n_bootstrap, len(labels)), generator=gen,
                                  device=device)  # fmt: skip
            stim_idx = [torch.cat([members[int(g)] for g in row]) for row in draws]
    return stim_idx, subj_w


def layer_patterns(layers, stimuli=None, layer_names=None, stimulus_ids=None, device=None,
                   extract_kwargs=None):  # fmt: skip
    """(layer names, list of (n, features) float64 tensors, stimulus ids) from a dict or model.

    Examples
    --------
    >>> import torch
    >>> names, feats, ids = layer_patterns({"conv": torch.ones(4, 2, 3)})
    >>> names, tuple(feats[0].shape), ids
    (['conv'], (4, 6), [0, 1, 2, 3])
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(layers, torch.nn.Module):
        kwargs = dict(extract_kwargs or {})
        given = kwargs.pop("stimulus_ids", None)
        if given is not None and stimulus_ids is not None:
            raise ValueError("give stimulus_ids= or extract_kwargs['stimulus_ids'], not both")
        stimulus_ids = given if given is not None else stimulus_ids
        if isinstance(stimuli, (str, os.PathLike)):
            from brainrdl.analysis.layer_rdms import ImageFolder

            stimuli = ImageFolder(stimuli)
        if stimulus_ids is None and getattr(stimuli, "ids", None) is not None:
            stimulus_ids = list(stimuli.ids)  # an image folder: the file names
        layers = _tap(layers, stimuli, layer_names, device, kwargs)
    if not isinstance(layers, Mapping) or not layers:
        raise TypeError(
            "layers must map layer names to (stimuli × features) tensors for a pattern metric "
            f"(or be a torch.nn.Module with stimuli= and layer_names=); got {type(layers).__name__}"
        )
    names, feats = [], []
    for name, x in layers.items():
        t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else np.asarray(x))
        if t.ndim < 2:
            raise ValueError(f"layers[{name!r}] must be (stimuli, features...); got shape "
                             f"{tuple(t.shape)}")  # fmt: skip
        t = t.reshape(t.shape[0], -1).to(device=device, dtype=torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"layers[{name!r}] holds NaN or infinite values")
        names.append(str(name))
        feats.append(t)
    n = {f.shape[0] for f in feats}
    if len(n) != 1:
        raise ValueError(
            f"every layer must have the same stimuli (rows); got row counts {sorted(n)}"
        )
    n = n.pop()
    ids = list(range(n)) if stimulus_ids is None else list(stimulus_ids)
    if len(ids) != n:
        raise ValueError(f"stimulus_ids has {len(ids)} labels but the layers have {n} stimuli")
    return names, feats, ids


def _tap(model, stimuli, layer_names, device, kwargs) -> dict:
    from brainrdl.nets.taps import LayerTaps

    if stimuli is None or layer_names is None:
        raise ValueError("layers is a model: pass stimuli= (a tensor or DataLoader) and "
                         "layer_names= (module paths) too")  # fmt: skip
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    batch_size = int(kwargs.pop("batch_size", 64))
    kwargs.pop("progress", None)  # accepted for symmetry with extract_rdms; no bar here
    taps_kwargs = {k: kwargs.pop(k) for k in ("reduction", "projection_dim", "seed") if k in kwargs}
    if kwargs:
        raise ValueError(
            f"extract_kwargs {sorted(kwargs)} are not used by the pattern metrics; expected "
            "batch_size, reduction, projection_dim, seed, stimulus_ids"
        )
    if isinstance(stimuli, torch.Tensor):
        batches = (stimuli[i : i + batch_size] for i in range(0, len(stimuli), batch_size))
    elif isinstance(stimuli, (torch.utils.data.DataLoader, torch.utils.data.Dataset)):
        if isinstance(stimuli, torch.utils.data.Dataset):
            stimuli = torch.utils.data.DataLoader(stimuli, batch_size=batch_size)
        elif isinstance(stimuli.sampler, torch.utils.data.RandomSampler):
            raise ValueError("stimuli: the DataLoader shuffles; pass one with shuffle=False")
        batches = (b[0] if isinstance(b, (tuple, list)) else b for b in stimuli)
    else:
        raise TypeError("stimuli must be a tensor, a torch Dataset or DataLoader, or a folder of "
                        f"images for a pattern metric; got {type(stimuli).__name__}")  # fmt: skip
    out: dict[str, list] = {n: [] for n in names}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), LayerTaps(model, names, detach=True, **taps_kwargs) as taps:
            for x in batches:
                for n, a in taps.extract(x.to(device)).items():
                    out[n].append(a.to(torch.float64))
    finally:
        model.train(was_training)
    return {n: torch.cat(v) for n, v in out.items()}


def _regions(brain) -> dict[str, dict]:
    from rsatoolbox.data import Dataset

    if isinstance(brain, Dataset):
        brain = {"brain": brain}
    if not isinstance(brain, Mapping) or not brain:
        raise TypeError("brain must map region names to rsatoolbox Datasets (stimuli × channels) "
                        f"for a pattern metric; got {type(brain).__name__}")  # fmt: skip
    out = {}
    for region, value in brain.items():
        if isinstance(value, Dataset):
            value = {"0": value}
        elif isinstance(value, Mapping):
            value = {str(k): v for k, v in value.items()}
        elif isinstance(value, Sequence) and not isinstance(value, str):
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict) or not value or not all(
            isinstance(v, Dataset) for v in value.values()
        ):
            raise TypeError(
                f"brain[{region!r}] must be an rsatoolbox Dataset (stimuli × channels) or a list "
                "/ dict of them (one per subject); for RDMs use metric='rsa'"
            )
        out[str(region)] = value
    return out


def _subject_patterns(ds, ids, n_layer, region, subject, pattern_descriptor, device) -> dict:
    """Per-stimulus mean patterns, layer row of each, split halves (if repeats), groups."""
    m = np.asarray(ds.measurements, dtype=np.float64)
    where = f"brain[{region!r}] (subject {subject})"
    if m.ndim != 2 or not np.all(np.isfinite(m)):
        raise ValueError(f"{where}: measurements must be a finite (stimuli, channels) array")
    labels = ds.obs_descriptors.get("stimulus")
    if labels is None:
        if m.shape[0] != n_layer:
            raise ValueError(
                f"{where} has {m.shape[0]} observations but the layers have {n_layer} stimuli; "
                "give the Dataset a 'stimulus' observation descriptor (and stimulus_ids=) to "
                "match them"
            )
        labels = ids
    keys = [_key(v) for v in labels]
    uniq = list(dict.fromkeys(keys))  # first-appearance order
    position = {_key(s): i for i, s in enumerate(ids)}
    missing = [s for s in uniq if s not in position]
    if missing:
        raise ValueError(f"{where} has stimuli the layers lack: {missing[:10]}; pass "
                         "stimulus_ids= (the labels of the layers' stimuli, in order)")  # fmt: skip
    slot = {k: i for i, k in enumerate(uniq)}
    inv = np.array([slot[k] for k in keys]) if len(uniq) < len(keys) else None
    halves = None
    if inv is None:
        y = m
    else:
        counts = np.bincount(inv, minlength=len(uniq))
        y = np.zeros((len(uniq), m.shape[1]))
        np.add.at(y, inv, m)
        y /= counts[:, None]
        if counts.min() >= 2:  # split-half: alternating repeats of each stimulus
            rank = np.zeros(len(keys), dtype=int)
            seen: dict = {}
            for j, k in enumerate(inv):
                rank[j] = seen.get(k, 0)
                seen[k] = rank[j] + 1
            h = []
            for parity in (0, 1):
                sel = rank % 2 == parity
                hm = np.zeros((len(uniq), m.shape[1]))
                np.add.at(hm, inv[sel], m[sel])
                hm /= np.bincount(inv[sel], minlength=len(uniq))[:, None]
                h.append(torch.as_tensor(hm, device=device))
            halves = tuple(h)
    if pattern_descriptor is not None:
        if pattern_descriptor not in ds.obs_descriptors:
            raise KeyError(f"pattern_descriptor={pattern_descriptor!r} is not an observation "
                           f"descriptor of {where}: {sorted(ds.obs_descriptors)}")  # fmt: skip
        gvals = np.asarray(ds.obs_descriptors[pattern_descriptor])
        first = {k: gvals[j] for j, k in reversed(list(enumerate(keys)))}
        groups = np.array([first[k] for k in uniq])
    else:
        groups = np.arange(len(uniq))
    rows = np.array([position[k] for k in uniq])
    srt = np.argsort(rows, kind="stable")  # the layers' stimulus order: the same for all subjects
    if halves is not None:
        halves = tuple(h[torch.as_tensor(srt, device=device)] for h in halves)
    return {"y": torch.as_tensor(y[srt], device=device), "rows": rows[srt], "halves": halves,
            "groups": groups[srt]}  # fmt: skip


def _key(value):
    return value.item() if hasattr(value, "item") else value
