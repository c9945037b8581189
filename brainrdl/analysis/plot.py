"""Plots of layer × region tables and RDMs; each returns the matplotlib Axes and takes ``ax=``.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import numpy as np
>>> ax = rdm_image(np.random.default_rng(0).random((6, 6)), categories=list("aabbbc"))
>>> len(ax.get_xticks())
3
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _axes(ax, figsize=(5, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Rows over all subjects only (drop per-subject rows, keep one model when several)."""
    if "subject" in table:
        table = table[table["subject"].astype(str) == "all"]
    return table


def _check_table(table: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame from compare_layers; got {type(table)}")
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; pass the output of compare_layers")


def layer_region_heatmap(
    table: pd.DataFrame,
    *,
    value: str = "similarity",
    relative_to_ceiling: bool = False,
    ax=None,
    cmap: str = "viridis",
    annotate: bool = True,
):
    """Heatmap of ``value`` with layers as rows and regions as columns; the best layer is boxed.

    Parameters
    ----------
    table : pd.DataFrame
        Output of :func:`brainrdl.compare_layers`.
    value : str
        Column to show (``similarity`` by default).
    relative_to_ceiling : bool
        Divide by the region's lower noise-ceiling bound.
    ax
        Axes to draw into (a new figure when None).
    cmap, annotate
        Colour map; write the numbers into the cells.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": ["a", "b"], "region": ["IT", "IT"], "similarity": [0.1, 0.3],
    ...                   "noise_ceiling_low": [0.5, 0.5]})
    >>> layer_region_heatmap(t).get_ylabel()
    'layer'
    """
    _check_table(table, ["layer", "region", value])
    t = _pooled(table)
    layers = list(dict.fromkeys(t["layer"]))
    regions = list(dict.fromkeys(t["region"]))
    grid = t.pivot_table(index="layer", columns="region", values=value, aggfunc="mean")
    grid = grid.reindex(index=layers, columns=regions)
    if relative_to_ceiling:
        _check_table(t, ["noise_ceiling_low"])
        ceil = t.groupby("region")["noise_ceiling_low"].first().reindex(regions)
        grid = grid / ceil.to_numpy()[None, :]
    ax = _axes(ax, figsize=(1.5 + 1.2 * len(regions), 1.0 + 0.35 * len(layers)))
    data = grid.to_numpy(dtype=float)
    image = ax.imshow(data, aspect="auto", cmap=cmap)
    ax.figure.colorbar(image, ax=ax, label=f"{value} / noise ceiling" if relative_to_ceiling
                       else value)  # fmt: skip
    ax.set_xticks(range(len(regions)), regions)
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel("region")
    ax.set_ylabel("layer")
    for j in range(len(regions)):
        column = data[:, j]
        if np.isfinite(column).any():
            i = int(np.nanargmax(column))
            ax.add_patch(_box(i, j))
    if annotate and data.size <= 400:
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    return ax


def _box(i: int, j: int):
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)


def similarity_profile(
    table: pd.DataFrame,
    *,
    regions: Sequence[str] | None = None,
    ax=None,
    show_ceiling: bool = True,
):
    """Similarity across layers, one line per region, with CIs and the noise-ceiling band.

    Parameters
    ----------
    table : pd.DataFrame
        Output of :func:`brainrdl.compare_layers` (CIs drawn when not NaN).
    regions : Sequence[str] | None
        Regions to draw (default all).
    ax
        Axes to draw into.
    show_ceiling : bool
        Shade each region's band between ``noise_ceiling_low`` and ``noise_ceiling_high``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": ["a", "b"], "region": ["IT", "IT"], "similarity": [0.1, 0.3],
    ...                   "ci_low": [0.0, 0.2], "ci_high": [0.2, 0.4],
    ...                   "noise_ceiling_low": [0.5, 0.5], "noise_ceiling_high": [0.6, 0.6]})
    >>> len(similarity_profile(t).lines) >= 1
    True
    """
    _check_table(table, ["layer", "region", "similarity"])
    t = _pooled(table)
    layers = list(dict.fromkeys(t["layer"]))
    regions = list(dict.fromkeys(t["region"])) if regions is None else list(regions)
    ax = _axes(ax, figsize=(max(4, 0.5 * len(layers) + 2), 3.5))
    x = np.arange(len(layers))
    colors = [f"C{i % 10}" for i in range(len(regions))]
    for region, color in zip(regions, colors):
        r = t[t["region"] == region].set_index("layer").reindex(layers)
        if r["similarity"].isna().all():
            raise ValueError(f"regions: {region!r} is not in the table")
        y = r["similarity"].to_numpy(float)
        ax.plot(x, y, "o-", color=color, label=region)
        if {"ci_low", "ci_high"} <= set(r) and np.isfinite(r["ci_low"].to_numpy(float)).any():
            low, high = r["ci_low"].to_numpy(float), r["ci_high"].to_numpy(float)
            ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", ecolor=color, capsize=3)
        # one brain RDM has no noise ceiling (held out against itself it would read 1–1)
        single = "n_rdms" in r and int(np.nanmax(r["n_rdms"].to_numpy(float))) < 2
        if show_ceiling and not single and {"noise_ceiling_low", "noise_ceiling_high"} <= set(r):
            lo = float(np.nanmean(r["noise_ceiling_low"]))
            hi = float(np.nanmean(r["noise_ceiling_high"]))
            if np.isfinite(lo) and np.isfinite(hi):
                ax.axhspan(lo, hi, color=color, alpha=0.15, linewidth=0)
    ax.set_xticks(x, layers, rotation=45, ha="right")
    ax.set_xlabel("layer")
    method = t["method"].iloc[0] if "method" in t and len(t) else "similarity"
    ax.set_ylabel(f"RDM similarity ({method})")
    ax.legend(frameon=False, fontsize=8)
    return ax


def rdm_image(
    rdm,
    *,
    categories: Sequence | None = None,
    ax=None,
    cmap: str = "viridis",
    rank: bool = False,
    colorbar: bool = True,
    title: str | None = None,
    sort: bool = True,
):
    """Show one RDM as an image, with category ticks and boundaries.

    Parameters
    ----------
    rdm
        rsatoolbox ``RDMs`` (the first RDM is shown), a square array or an upper-triangle vector.
    categories : Sequence | None
        One label per condition (or the name of a pattern descriptor of ``rdm``); contiguous runs
        of a label get one tick at their centre and a boundary line.
    ax, cmap, colorbar, title
        Drawing options.
    rank : bool
        Show percentile ranks of the dissimilarities instead of raw values.
    sort : bool
        When a category's conditions are not contiguous, reorder the conditions (stably) so
        that each category forms one block with one tick label; False keeps the given order.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> rdm_image(np.arange(6.0), title="demo").get_title()
    'demo'
    """
    mat, categories, name = _square(rdm, categories)
    measure = getattr(rdm, "dissimilarity_measure", None)
    if categories is not None and sort:
        labels = np.asarray(categories).astype(str)
        if len(labels) == mat.shape[0]:
            runs = 1 + int(np.sum(labels[1:] != labels[:-1]))
            if runs > len(set(labels.tolist())):  # a category is split: sort into blocks
                order = np.argsort(labels, kind="stable")
                mat, categories = mat[np.ix_(order, order)], labels[order]
    if rank:
        from scipy.stats import rankdata

        iu = np.triu_indices(mat.shape[0], 1)
        ranks = rankdata(mat[iu]) / len(iu[0]) * 100
        mat = np.zeros_like(mat)
        mat[iu] = ranks
        mat = mat + mat.T
    ax = _axes(ax, figsize=(4.5, 4))
    image = ax.imshow(mat, cmap=cmap, interpolation="nearest")
    if colorbar:
        what = f"{measure} dissimilarity" if measure else "dissimilarity"
        ax.figure.colorbar(image, ax=ax,
                           label=f"percentile of {what}" if rank else what)  # fmt: skip
    if categories is not None:
        labels = np.asarray(categories).astype(str)
        if len(labels) != mat.shape[0]:
            raise ValueError(
                f"categories must have one label per condition ({mat.shape[0]}); got {len(labels)}"
            )
        starts = [0, *[i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]]
        ends = [*starts[1:], len(labels)]
        centres = [(s + e - 1) / 2 for s, e in zip(starts, ends)]
        ax.set_xticks(centres, [labels[s] for s in starts], rotation=90, fontsize=7)
        ax.set_yticks(centres, [labels[s] for s in starts], fontsize=7)
        for b in starts[1:]:
            ax.axhline(b - 0.5, color="w", linewidth=0.8)
            ax.axvline(b - 0.5, color="w", linewidth=0.8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title if title is not None else name)
    return ax


def mds_plot(
    rdm,
    *,
    labels: Sequence | None = None,
    ax=None,
    seed: int = 0,
    title: str | None = None,
):
    """2-D metric MDS of one RDM, points coloured by ``labels``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> pts = np.random.default_rng(0).random((8, 3))
    >>> d = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    >>> ax = mds_plot(d, labels=list("aaaabbbb"))
    >>> len(ax.collections)
    2
    """
    from sklearn.manifold import MDS

    mat, labels, name = _square(rdm, labels)
    try:  # scikit-learn >= 1.8 names the precomputed input by ``metric``
        mds = MDS(n_components=2, metric="precomputed", init="classical_mds", random_state=seed)
    except (TypeError, ValueError):
        mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4)
    coords = mds.fit_transform(np.nan_to_num(mat))
    ax = _axes(ax, figsize=(4.5, 4))
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=14)
    else:
        labels = np.asarray(labels).astype(str)
        for i, label in enumerate(dict.fromkeys(labels)):
            m = labels == label
            ax.scatter(coords[m, 0], coords[m, 1], s=14, color=f"C{i % 10}", label=label)
        ax.legend(frameon=False, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title if title is not None else f"MDS {name}".strip())
    return ax


def _square(rdm, categories):
    """(n, n) float array, labels, and a name from RDMs / arrays."""
    name = ""
    try:
        from rsatoolbox.rdm import RDMs
    except ImportError:  # pragma: no cover
        RDMs = ()
    if isinstance(rdm, RDMs):
        if isinstance(categories, str):
            if categories not in rdm.pattern_descriptors:
                raise KeyError(
                    f"categories={categories!r} is not a pattern descriptor; available: "
                    f"{sorted(rdm.pattern_descriptors)}"
                )
            categories = rdm.pattern_descriptors[categories]
        for key in ("layer", "region", "name", "subject"):
            if key in rdm.rdm_descriptors:
                name = str(rdm.rdm_descriptors[key][0])
                break
        mat = rdm.get_matrices()[0]
    else:
        arr = np.asarray(rdm.detach().cpu() if hasattr(rdm, "detach") else rdm, dtype=float)
        if arr.ndim == 1:
            from scipy.spatial.distance import squareform

            arr = squareform(arr, checks=False)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise ValueError(f"rdm must be RDMs, a square matrix or a vector; got {arr.shape}")
        mat = arr
    return np.asarray(mat, dtype=float), categories, name


def plot_log(log: pd.DataFrame, path: str | Path | None = None):
    """Learning curves of a :func:`brainrdl.fit` log: losses, accuracies and held-out RSA.

    Parameters
    ----------
    log : pd.DataFrame
        The DataFrame ``fit`` returns (one row per epoch).
    path : str | Path | None
        Where to save the figure (then it is closed); None returns it open.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels: losses and alignment terms, accuracies, held-out scores.

    Examples
    --------
    >>> import pandas as pd
    >>> fig = plot_log(pd.DataFrame({"epoch": [0, 1], "task_loss": [1.0, 0.5]}))
    >>> len(fig.axes)
    3
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    groups = [
        ("loss", "loss value", [c for c in log if c.endswith("loss") or c.startswith("align/")]),
        ("accuracy", "accuracy", [c for c in log if c.endswith("accuracy")]),
        ("held-out RSA", "similarity (method in the legend)",
         [c for c in log if c.startswith("heldout_")]),
    ]  # fmt: skip
    for ax, (title, ylabel, cols) in zip(axes, groups):
        for c in cols:
            ax.plot(log["epoch"], log[c], marker="o", label=c)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if cols:
            ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
