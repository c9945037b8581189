"""Layer × region comparison tables: similarity, bootstrap CIs, noise ceilings, best layer.

``compare_layers`` answers "which layer matches which region, and how close to the noise ceiling":
each layer RDM is compared with every RDM of a region (all subjects and sessions) and the mean is
reported, as rsatoolbox's ``eval_fixed``; the noise ceiling is rsatoolbox's ``boot_noise_ceiling``
with the subjects as groups; CIs come from a vectorised bootstrap over stimuli, subjects or both
(:mod:`brainrdl.stats.bootstrap`). ``compare_models`` puts several models (e.g. before and after RDL
training) on one table, with a paired bootstrap of their difference.

Examples
--------
>>> import numpy as np, rsatoolbox
>>> rng = np.random.default_rng(0)
>>> layers = rsatoolbox.rdm.RDMs(rng.random((2, 28)), rdm_descriptors={"layer": ["a", "b"]})
>>> brain = {"IT": rsatoolbox.rdm.RDMs(rng.random((3, 28)))}
>>> table = compare_layers(layers, brain)
>>> list(table[["layer", "region"]].itertuples(index=False, name=None))
[('a', 'IT'), ('b', 'IT')]
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from brainrdl.rsa.distances import n_conditions_from_length
from brainrdl.rsa.methods import LAYER_COMPARISON_METHODS
from brainrdl.stats.bootstrap import (
    BOOTSTRAP_KINDS,
    bootstrap_compare,
    compare_all_pairs,
    percentile_ci,
)
from brainrdl.stats.ceilings import AUTO, noise_ceiling_vectors, subject_groups
from brainrdl.validation import check_choice, check_device, check_scalar

METHODS = LAYER_COMPARISON_METHODS  # the one list: brainrdl.rsa.methods


def compare_layers(
    layers,
    brain_rdms=None,
    *,
    stimuli=None,
    layer_names: str | Sequence[str] | None = None,
    stimulus_ids: Sequence | None = None,
    method: str = "corr",
    subject_descriptor: str | None = AUTO,
    n_bootstrap: int = 0,
    bootstrap: str = "stimuli",
    ci: float = 0.95,
    seed: int | None = None,
    device: torch.device | str | None = None,
    per_subject: bool = False,
    pattern_descriptor: str | None = None,
    extract_kwargs: Mapping | None = None,
    restrict: bool = False,
    pooled: bool = False,
    metric: str = "rsa",
    metric_kwargs: Mapping | None = None,
    brain=None,
) -> pd.DataFrame:
    """Compare model layers with brain regions: one row per layer × region (× subject).

    Parameters
    ----------
    layers
        A ``torch.nn.Module`` (then ``stimuli`` and ``layer_names`` are needed and the layer RDMs
        come from :func:`brainrdl.extract_rdms`), or precomputed rsatoolbox ``RDMs`` with a
        ``layer`` rdm descriptor (one RDM per layer).
    brain_rdms
        Mapping region name → rsatoolbox ``RDMs`` (several subjects / sessions per region), or a
        single ``RDMs`` (region ``"brain"``). When both the layer and the brain RDMs carry a
        ``stimulus`` pattern descriptor, the layer RDMs are reordered / subset to the brain's.
    stimuli
        The stimuli (tensor, Dataset, DataLoader or image folder) when ``layers`` is a model.
    layer_names : str | Sequence[str] | None
        Module paths of the layers to tap when ``layers`` is a model (one path may be a str).
    stimulus_ids : Sequence | None
        Stimulus labels of ``stimuli``, in their order, when ``layers`` is a model: they become
        the layer RDMs' ``stimulus`` pattern descriptor (default 0..N-1, or the file names of an
        image folder), so that layer RDMs align with brain RDMs labelled by stimulus (e.g. the
        adapters' RDMs). For precomputed layer ``RDMs`` they replace the ``stimulus`` pattern
        descriptor.
    method : str
        Comparison method (``brainrdl.compare`` names; ``corr`` by default).
    subject_descriptor : str | None
        rdm descriptor telling subjects apart: subjects are the groups of the leave-one-out
        noise ceiling, of the subject bootstrap and of ``per_subject`` rows. ``"auto"``
        (default, as :func:`brainrdl.noise_ceiling`): ``"subject"`` when the brain RDMs have
        it, so two sessions of one subject count as one subject; None: each RDM is its own
        group.
    n_bootstrap : int
        Bootstrap resamples for the CIs; 0 gives NaN CIs.
    bootstrap : str
        ``"stimuli"``, ``"subjects"`` or ``"both"``.
    ci : float
        Coverage of the percentile intervals.
    seed : int | None
        Seed of the resampling (the same resamples for every region).
    device : torch.device | str | None
        Device of the bootstrap (and of the forward passes for a model).
    per_subject : bool
        Add one row per layer × region × subject (column ``subject``; the pooled rows have
        ``subject == "all"``), with the subject's own noise-ceiling bounds.
    pattern_descriptor : str | None
        Pattern descriptor whose values are resampled as whole groups (default each stimulus).
    extract_kwargs : Mapping | None
        Extra keyword arguments for :func:`brainrdl.extract_rdms`.
    restrict : bool
        Compare on the stimuli that the layer and the brain RDMs share (both need a
        ``stimulus`` pattern descriptor): brain RDMs covering more stimuli (e.g. all 92, when
        the layer RDMs hold only held-out images) are restricted to the layer's, and layer RDMs
        covering more to the brain's. Default False: every brain stimulus must be in the layer
        RDMs (else a ValueError).
    pooled : bool
        Compare each layer with the mean RDM of each region (NaN-aware mean of its RDMs, the
        target a ``BrainTeacher`` trains toward) instead of with each RDM; the noise-ceiling
        columns are then NaN (the ceiling refers to individual RDMs: use the default rows).
    metric : str
        ``"rsa"`` (default: layer RDMs vs brain RDMs, as above), or a pattern metric: ``"cka"``,
        ``"encoding"`` (cross-validated ridge) or ``"procrustes"``. Pattern metrics take
        ``layers`` as a mapping layer name → (stimuli × features) tensor (or a model) and
        ``brain_rdms`` as a mapping region → rsatoolbox ``Dataset`` (stimuli × channels, or a
        list of them, one per subject); see
        :func:`brainrdl.analysis.pattern_comparison.compare_patterns` (``method`` and
        ``subject_descriptor`` do not apply there).
    metric_kwargs : Mapping | None
        Options of a pattern metric (e.g. ``{"debiased": True}`` for CKA, ``{"alphas": [...],
        "scoring": "r2"}`` for encoding).
    brain
        Keyword alias of ``brain_rdms`` (the brain data: RDMs for RSA, Datasets for the pattern
        metrics); give one of the two.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer``, ``region``, ``similarity``, ``ci_low``, ``ci_high``, ``se``,
        ``noise_ceiling_low``, ``noise_ceiling_high``, ``best`` (the best layer of each region),
        ``n_rdms``, ``method``, ``metric`` (and ``subject`` when ``per_subject``; ``distance``
        for Procrustes). A layer RDM with NaN entries (e.g. from
        ``extract_rdms(..., on_undefined="nan")``) gets NaN similarity and CIs, a warning, and is
        never ``best``: dropping its NaN pairs would score it on other pairs than the other layers.

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> rng = np.random.default_rng(1)
    >>> layers = rsatoolbox.rdm.RDMs(rng.random((3, 45)), rdm_descriptors={"layer": list("abc")})
    >>> brain = rsatoolbox.rdm.RDMs(rng.random((4, 45)), rdm_descriptors={"subject": [1, 1, 2, 2]})
    >>> t = compare_layers(layers, {"V1": brain}, subject_descriptor="subject", n_bootstrap=50,
    ...                    seed=0)
    >>> int(t["best"].sum()), bool((t["ci_low"] <= t["ci_high"]).all())
    (1, True)
    """
    if (brain_rdms is None) == (brain is None):
        raise TypeError("compare_layers needs the brain data: pass brain_rdms (positional) or "
                        "brain=, not both")  # fmt: skip
    brain_rdms = brain if brain_rdms is None else brain_rdms
    if metric != "rsa":  # pattern metrics (CKA, encoding, Procrustes): their own module
        from brainrdl.analysis.pattern_comparison import PATTERN_METRICS, compare_patterns

        check_choice("metric", metric, ("rsa", *PATTERN_METRICS))
        return compare_patterns(
            layers, brain_rdms, metric=metric, stimuli=stimuli, layer_names=layer_names,
            stimulus_ids=stimulus_ids, n_bootstrap=n_bootstrap, bootstrap=bootstrap, ci=ci,
            seed=seed, device=device, per_subject=per_subject,
            pattern_descriptor=pattern_descriptor, metric_kwargs=metric_kwargs,
            extract_kwargs=extract_kwargs,
        )  # fmt: skip
    if metric_kwargs:
        raise ValueError("metric_kwargs apply to the pattern metrics only, not metric='rsa'")
    names, x, ids = layer_vectors(layers, stimuli, layer_names, device, extract_kwargs,
                                  stimulus_ids=stimulus_ids)  # fmt: skip
    if restrict or pooled:
        regions = _regions(brain_rdms)
        if restrict:
            regions = {r: _restrict(b, ids, r) for r, b in regions.items()}
        if pooled:
            regions = {r: _pool(b) for r, b in regions.items()}
        brain_rdms = regions
    table, _ = _compare(
        {"": (names, x, ids)},
        brain_rdms,
        method=method,
        subject_descriptor=subject_descriptor,
        n_bootstrap=n_bootstrap,
        bootstrap=bootstrap,
        ci=ci,
        seed=seed,
        device=device,
        per_subject=per_subject,
        pattern_descriptor=pattern_descriptor,
    )
    table = table.drop(columns="model")
    table["metric"] = "rsa"
    if pooled:
        table[["noise_ceiling_low", "noise_ceiling_high"]] = np.nan
    return table


def _restrict(brain, ids, region: str):
    """``brain`` restricted to the stimuli in ``ids`` (its own order kept)."""
    from rsatoolbox.rdm import RDMs

    brain_ids = brain.pattern_descriptors.get("stimulus")
    if ids is None or brain_ids is None:
        raise ValueError(
            f"restrict=True needs a 'stimulus' pattern descriptor on the layer RDMs and on "
            f"region {region!r} (pass stimulus_ids= for the layers)"
        )
    wanted = {_key(i) for i in ids}
    keep = [i for i, b in enumerate(brain_ids) if _key(b) in wanted]
    if len(keep) < 3:
        raise ValueError(
            f"restrict=True: region {region!r} shares {len(keep)} stimuli with the layer RDMs; "
            "a comparison needs at least 3"
        )
    if len(keep) == brain.n_cond:
        return brain
    mats = brain.get_matrices()[:, keep][:, :, keep]
    return RDMs(
        mats, dissimilarity_measure=brain.dissimilarity_measure,
        descriptors=dict(brain.descriptors), rdm_descriptors=dict(brain.rdm_descriptors),
        pattern_descriptors={k: [v[i] for i in keep] for k, v in
                             brain.pattern_descriptors.items()},
    )  # fmt: skip


def _pool(brain):
    """The NaN-aware mean RDM of a region, as one RDM."""
    from rsatoolbox.rdm import RDMs

    v = brain.get_vectors().astype(np.float64)
    count = np.isfinite(v).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.where(np.isfinite(v), v, 0.0).sum(0) / count, np.nan)
    return RDMs(mean[None], dissimilarity_measure=brain.dissimilarity_measure,
                rdm_descriptors={"subject": ["pooled"]},
                pattern_descriptors=dict(brain.pattern_descriptors))  # fmt: skip


def _best(values: np.ndarray, idx: list[int]):
    """Index (into ``values``) of the largest finite value among ``idx``; None if none is."""
    finite = [i for i in idx if np.isfinite(values[i])]
    return max(finite, key=lambda i: values[i]) if finite else None


@contextlib.contextmanager
def _quiet_all_nan():
    """NumPy's all-NaN warnings off: NaN layers (already warned about) give NaN CIs."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _nan_layers(x: torch.Tensor, keys: list) -> torch.Tensor:
    """Rows of ``x`` with NaN entries; warns naming their layers."""
    bad = torch.isnan(x).any(dim=1)
    if bool(bad.any()):
        import warnings

        names = [keys[i][1] for i in torch.nonzero(bad).flatten().tolist()]
        warnings.warn(
            f"layer RDMs {names} have NaN dissimilarities (undefined patterns); their "
            "similarity is reported as NaN rather than computed on fewer pairs than the other "
            "layers", stacklevel=3,
        )
    return bad


def compare_models(
    models: Mapping[str, object],
    brain_rdms,
    *,
    stimuli=None,
    layer_names: str | Sequence[str] | None = None,
    stimulus_ids: Sequence | None = None,
    method: str = "corr",
    subject_descriptor: str | None = AUTO,
    n_bootstrap: int = 1000,
    bootstrap: str = "stimuli",
    ci: float = 0.95,
    seed: int | None = None,
    device: torch.device | str | None = None,
    pattern_descriptor: str | None = None,
    extract_kwargs: Mapping | None = None,
) -> pd.DataFrame:
    """Several models on one layer × region table, with a paired bootstrap of their differences.

    Every model is evaluated on the *same* resamples, so the difference of two models (e.g. after −
    before RDL training) has a paired bootstrap distribution. Rows with ``model`` equal to
    ``"<other> - <first>"`` hold the difference from the first model for each layer present in
    both: ``similarity`` is the difference, ``ci_low`` / ``ci_high`` its percentile interval and
    ``p_value`` the two-sided bootstrap p-value of a zero difference.

    Parameters
    ----------
    models : Mapping[str, object]
        Mapping name → model or layer ``RDMs`` (as ``layers`` of :func:`compare_layers`); the first
        entry is the reference.
    brain_rdms, stimuli, layer_names, stimulus_ids, method, subject_descriptor, n_bootstrap,
    bootstrap, ci, seed, device, pattern_descriptor, extract_kwargs
        As for :func:`compare_layers`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`compare_layers` plus ``model`` and ``p_value``.

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> rng = np.random.default_rng(2)
    >>> before = rsatoolbox.rdm.RDMs(rng.random((1, 45)), rdm_descriptors={"layer": ["fc"]})
    >>> after = rsatoolbox.rdm.RDMs(rng.random((1, 45)), rdm_descriptors={"layer": ["fc"]})
    >>> brain = rsatoolbox.rdm.RDMs(rng.random((3, 45)))
    >>> t = compare_models({"before": before, "after": after}, {"IT": brain}, n_bootstrap=20,
    ...                    seed=0)
    >>> list(t["model"])
    ['before', 'after', 'after - before']
    """
    if not isinstance(models, Mapping) or len(models) < 2:
        raise ValueError("models must map at least two names to models or layer RDMs")
    entries = {
        str(name): layer_vectors(
            m, stimuli, layer_names, device, extract_kwargs, stimulus_ids=stimulus_ids
        )
        for name, m in models.items()
    }
    table, boot = _compare(
        entries,
        brain_rdms,
        method=method,
        subject_descriptor=subject_descriptor,
        n_bootstrap=n_bootstrap,
        bootstrap=bootstrap,
        ci=ci,
        seed=seed,
        device=device,
        per_subject=False,
        pattern_descriptor=pattern_descriptor,
    )
    model_names = list(entries)
    ref = model_names[0]
    rows = []
    for region, (keys, means, samples) in boot.items():
        index = {k: i for i, k in enumerate(keys)}
        for other in model_names[1:]:
            for layer in entries[other][0]:
                if (ref, layer) not in index:
                    continue
                i_ref, i_other = index[(ref, layer)], index[(other, layer)]
                diff = means[i_other] - means[i_ref]
                row = {"model": f"{other} - {ref}", "layer": layer, "region": region,
                       "similarity": diff, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan,
                       "p_value": np.nan}  # fmt: skip
                if samples is not None:
                    d = samples[:, i_other] - samples[:, i_ref]
                    d = d[np.isfinite(d)]
                    low, high = percentile_ci(d[:, None], ci)
                    row.update(ci_low=float(low[0]), ci_high=float(high[0]), se=float(d.std()))
                    # two-sided bootstrap p-value of "no difference", never below 1 / n
                    tail = min(np.mean(d <= 0), np.mean(d >= 0))
                    row["p_value"] = float(min(1.0, max(2 * tail, 1.0 / max(len(d), 1))))
                rows.append(row)
    if rows:
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    if "p_value" not in table:
        table["p_value"] = np.nan
    return table


def layer_vectors(layers, stimuli=None, layer_names=None, device=None, extract_kwargs=None, *,
                  stimulus_ids=None):  # fmt: skip
    """(layer names, (L, K) float64 RDM vectors, stimulus ids or None) from a model or RDMs.

    ``stimulus_ids`` labels the stimuli (see :func:`compare_layers`).

    Examples
    --------
    >>> import numpy as np, rsatoolbox
    >>> rdms = rsatoolbox.rdm.RDMs(np.ones((2, 3)), rdm_descriptors={"layer": ["a", "b"]})
    >>> layer_vectors(rdms)[0]
    ['a', 'b']
    """
    from rsatoolbox.rdm import RDMs

    if isinstance(layers, torch.nn.Module):
        if stimuli is None or layer_names is None:
            raise ValueError(
                "layers is a model: pass stimuli= (tensor, Dataset, DataLoader or image folder) "
                "and layer_names= (module paths) too"
            )
        from brainrdl.analysis.layer_rdms import extract_rdms

        if isinstance(layer_names, str):
            layer_names = [layer_names]
        kwargs = dict(extract_kwargs or {})
        kwargs.setdefault("progress", False)
        if stimulus_ids is not None:
            if kwargs.get("stimulus_ids") is not None:
                raise ValueError("give stimulus_ids= or extract_kwargs['stimulus_ids'], not both")
            kwargs["stimulus_ids"] = stimulus_ids
        layers = extract_rdms(layers, stimuli, list(layer_names), device=device, **kwargs)
        stimulus_ids = None  # already the pattern descriptor
    if not isinstance(layers, RDMs):
        raise TypeError(
            "layers must be a torch.nn.Module or rsatoolbox RDMs with a 'layer' rdm descriptor; "
            f"got {type(layers).__name__}"
        )
    if "layer" in layers.rdm_descriptors:
        names = [str(n) for n in layers.rdm_descriptors["layer"]]
    else:
        names = [str(i) for i in range(layers.n_rdm)]
    if len(set(names)) != len(names):
        raise ValueError(f"layers: the 'layer' rdm descriptor must be unique; got {names}")
    ids = layers.pattern_descriptors.get("stimulus")
    if stimulus_ids is not None:
        ids = list(stimulus_ids)
        if len(ids) != layers.n_cond:
            raise ValueError(f"stimulus_ids has {len(ids)} labels but the layer RDMs have "
                             f"{layers.n_cond} conditions")  # fmt: skip
    return names, layers.get_vectors().astype(np.float64), ids


def _compare(
    entries, brain_rdms, *, method, subject_descriptor, n_bootstrap, bootstrap, ci, seed,
    device, per_subject, pattern_descriptor,
):  # fmt: skip
    """Shared engine: the table, and per region (keys, mean similarities, bootstrap samples)."""
    check_choice("method", method, METHODS)
    check_choice("bootstrap", bootstrap, BOOTSTRAP_KINDS)
    n_bootstrap = check_scalar("n_bootstrap", n_bootstrap, int, min_val=0)
    ci = check_scalar("ci", ci, float, min_val=0.0, max_val=1.0, include_min=False,
                      include_max=False)
    check_device("device", device)
    regions = _regions(brain_rdms)
    device = torch.device(device) if device is not None else torch.device("cpu")
    rows, boot = [], {}
    for region, brain in regions.items():
        y = torch.as_tensor(brain.get_vectors(), dtype=torch.float64, device=device)
        groups = _groups(brain, subject_descriptor, region)
        keys, xs = [], []
        for model, (names, x, ids) in entries.items():
            x = _align(x, ids, brain, region)
            keys += [(model, n) for n in names]
            xs.append(torch.as_tensor(x, dtype=torch.float64, device=device))
        x = torch.cat(xs)
        nan_rows = _nan_layers(x, keys)
        x = torch.where(nan_rows[:, None], torch.nan_to_num(x), x)
        sims = compare_all_pairs(x, y, method)[0]  # (L, S): compare(layer, each brain RDM)
        sims = sims.masked_fill(nan_rows[:, None].to(sims.device), float("nan"))
        means = sims.mean(1).cpu().numpy()
        nc_low, nc_high = (float(v) for v in noise_ceiling_vectors(y, groups, method))
        samples = None
        if n_bootstrap > 0:
            pgroups = None
            if pattern_descriptor is not None:
                if pattern_descriptor not in brain.pattern_descriptors:
                    raise KeyError(
                        f"pattern_descriptor={pattern_descriptor!r} is not a pattern descriptor "
                        f"of region {region!r}: {sorted(brain.pattern_descriptors)}"
                    )
                pgroups = np.asarray(brain.pattern_descriptors[pattern_descriptor])
            res = bootstrap_compare(
                x, y, method=method, n_bootstrap=n_bootstrap, bootstrap=bootstrap,
                rdm_groups=groups, pattern_groups=pgroups, seed=seed, device=device,
            )  # fmt: skip
            samples = res.mean_over_rdms().cpu().numpy()  # (B, L)
            samples[:, nan_rows.cpu().numpy()] = np.nan
            with _quiet_all_nan():
                low, high = percentile_ci(samples, ci)
                se = np.nanstd(samples, axis=0)
        else:
            low = high = se = np.full(len(keys), np.nan)
        boot[region] = (keys, means, samples)
        for model in entries:
            idx = [i for i, k in enumerate(keys) if k[0] == model]
            best = _best(means, idx)
            for i in idx:
                rows.append({"model": model, "layer": keys[i][1], "region": region,
                             "similarity": float(means[i]), "ci_low": float(low[i]),
                             "ci_high": float(high[i]), "se": float(se[i]),
                             "noise_ceiling_low": nc_low, "noise_ceiling_high": nc_high,
                             "best": i == best, "n_rdms": int(y.shape[0]), "method": method,
                             "subject": "all"})  # fmt: skip
        if per_subject:
            rows += _subject_rows(entries, keys, sims, y, groups, method, region, res_samples=(
                res if n_bootstrap > 0 and bootstrap == "stimuli" else None), ci=ci)
    table = pd.DataFrame(rows)
    if not per_subject:
        table = table.drop(columns="subject")
    return table, boot


def _subject_rows(entries, keys, sims, y, groups, method, region, res_samples, ci):
    from brainrdl.stats.ceilings import pool_vectors

    labels = np.arange(y.shape[0]) if groups is None else np.asarray(groups)
    pooled_all = pool_vectors(y, method)
    rows = []
    for label in np.unique(labels):
        mask = labels == label
        tmask = torch.as_tensor(mask, device=y.device)
        # the subject's own ceiling: others' pool (lower) and everyone's pool (upper) vs the subject
        if len(np.unique(labels)) > 1:
            others = pool_vectors(y[~tmask], method)
            low_nc = float(compare_all_pairs(others, y[tmask], method).mean())
        else:
            low_nc = float(compare_all_pairs(pooled_all, y[tmask], method).mean())
        high_nc = float(compare_all_pairs(pooled_all, y[tmask], method).mean())
        sub = sims[:, tmask].mean(1).cpu().numpy()
        if res_samples is not None:
            s = res_samples.samples[:, :, tmask].mean(-1).cpu().numpy()
            s[:, np.isnan(sub)] = np.nan  # layers with NaN RDMs (see _nan_layers)
            with _quiet_all_nan():
                low, high = percentile_ci(s, ci)
                se = np.nanstd(s, axis=0)
        else:
            low = high = se = np.full(len(keys), np.nan)
        for model in entries:
            idx = [i for i, k in enumerate(keys) if k[0] == model]
            best = _best(sub, idx)
            for i in idx:
                rows.append({"model": model, "layer": keys[i][1], "region": region,
                             "similarity": float(sub[i]), "ci_low": float(low[i]),
                             "ci_high": float(high[i]), "se": float(se[i]),
                             "noise_ceiling_low": low_nc, "noise_ceiling_high": high_nc,
                             "best": i == best, "n_rdms": int(mask.sum()), "method": method,
                             "subject": _key(label)})  # fmt: skip
    return rows


def _regions(brain_rdms) -> dict:
    from rsatoolbox.rdm import RDMs

    if isinstance(brain_rdms, RDMs):
        brain_rdms = {"brain": brain_rdms}
    if not isinstance(brain_rdms, Mapping) or not brain_rdms:
        raise TypeError(
            "brain_rdms must map region names to rsatoolbox RDMs (or be one RDMs); got "
            f"{type(brain_rdms).__name__}"
        )
    for region, rdms in brain_rdms.items():
        if not isinstance(rdms, RDMs):
            raise TypeError(
                f"brain_rdms[{region!r}] must be rsatoolbox RDMs; got {type(rdms).__name__}"
            )
    return {str(k): v for k, v in brain_rdms.items()}


def _groups(brain, subject_descriptor: str | None, region: str):
    if (subject_descriptor not in (None, "index", AUTO)
            and subject_descriptor not in brain.rdm_descriptors and brain.n_rdm == 1):
        return None  # a single (pooled) RDM needs no subject labels
    return subject_groups(brain, subject_descriptor, where=f"region {region!r}")


def _align(x: np.ndarray, ids, brain, region: str) -> np.ndarray:
    """Reorder / subset layer RDM vectors to the brain RDMs' stimuli (by ``stimulus``)."""
    brain_ids = brain.pattern_descriptors.get("stimulus")
    k = brain.dissimilarities.shape[1]
    if ids is None or brain_ids is None:
        if x.shape[1] != k:
            raise ValueError(
                f"layer RDMs have {_n(x.shape[1])} conditions but region {region!r} has "
                f"{brain.n_cond}; give both a 'stimulus' pattern descriptor to align them"
            )
        return x
    ids = [_key(i) for i in ids]
    brain_ids = [_key(i) for i in brain_ids]
    if ids == brain_ids:
        return x
    position = {s: i for i, s in enumerate(ids)}
    missing = [s for s in brain_ids if s not in position]
    if missing:
        raise ValueError(
            f"region {region!r} has stimuli that the layer RDMs lack: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''} (layer RDMs have {ids[:5]}"
            f"{' ...' if len(ids) > 5 else ''}); pass stimulus_ids= (the labels of the stimuli, "
            "in their order) so that the layer RDMs carry the brain RDMs' stimulus labels, or "
            "restrict=True to compare on the stimuli both cover (e.g. held-out images)"
        )
    from scipy.spatial.distance import squareform

    idx = np.array([position[s] for s in brain_ids])
    n = len(idx)
    iu, ju = np.triu_indices(n, 1)
    return np.stack([squareform(v, checks=False)[idx][:, idx][iu, ju] for v in x])


def _key(value):
    return value.item() if hasattr(value, "item") else value


def _n(k: int) -> int | None:
    return n_conditions_from_length(k)
