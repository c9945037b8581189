"""Seeded, category-stratified stimulus splits that return stimulus-id lists.

Brain data sets have few stimuli, so a held-out evaluation must keep every category in every
fold and be reproducible. ``kfold_stimuli`` deals each category's stimuli (shuffled with the seed)
round-robin over the folds, continuing where the previous category stopped, so fold sizes differ
by at most one and each category's counts per fold differ by at most one. The ids come back as
plain lists, usable everywhere an id list is taken (``BrainTeacher.subset``, ``extract_rdms(...,
stimulus_ids=...)``, rsatoolbox ``RDMs.subset_pattern("stimulus", ids)``).

Examples
--------
>>> folds = kfold_stimuli(range(6), ["a", "a", "a", "b", "b", "b"], k=3, seed=0)
>>> [sorted(f.test) for f in folds]
[[2, 5], [0, 4], [1, 3]]
>>> sorted(folds[0].train)
[0, 1, 3, 4]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

from brainrdl.validation import check_distinct_ids

__all__ = ["Split", "kfold_stimuli", "split_stimuli"]


class Split(NamedTuple):
    """One split: ``train`` and ``test`` stimulus ids (lists, in the order of ``ids``)."""

    train: list
    test: list


def kfold_stimuli(
    ids: Iterable[Hashable],
    categories: Sequence | None = None,
    k: int = 5,
    seed: int | None = 0,
) -> list[Split]:
    """K folds over stimuli, stratified by a category per stimulus; every id is tested once.

    Parameters
    ----------
    ids : Iterable[Hashable]
        Stimulus ids (distinct; ints or strings; NumPy / torch scalars become Python scalars).
    categories : Sequence | None
        One category label per id (any hashable values), or None for no stratification.
    k : int
        Number of folds (2 ≤ k ≤ number of ids).
    seed : int | None
        Seed of the shuffle within categories (None: unshuffled, in the order of ``ids``).

    Returns
    -------
    list of Split
        ``k`` splits; ``test`` sets are disjoint and cover ``ids``; ``train`` is the rest. Each
        list keeps the order of ``ids``.

    Examples
    --------
    >>> folds = kfold_stimuli(["x", "y", "z", "w"], k=2, seed=1)
    >>> sorted(folds[0].test + folds[1].test)
    ['w', 'x', 'y', 'z']
    """
    ids_list, cats = _check(ids, categories)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 2 <= k <= len(ids_list):
        raise ValueError(f"k must be an int from 2 to the number of ids ({len(ids_list)}); "
                         f"got {k!r}")
    fold_of = _deal(cats, int(k), seed)
    return [
        Split([i for i, f in zip(ids_list, fold_of) if f != fold],
              [i for i, f in zip(ids_list, fold_of) if f == fold])
        for fold in range(int(k))
    ]


def split_stimuli(
    ids: Iterable[Hashable],
    categories: Sequence | None = None,
    test_size: float | int = 0.25,
    seed: int | None = 0,
) -> Split:
    """One train / test split of stimulus ids, stratified by category.

    Parameters
    ----------
    ids, categories, seed
        As for :func:`kfold_stimuli`.
    test_size : float | int
        Fraction of the ids (0 < f < 1) or their number (1 ≤ n < len(ids)) held out. Each
        category contributes its share, rounded so that the total is exact.

    Returns
    -------
    Split

    Examples
    --------
    >>> s = split_stimuli(range(8), [0, 0, 0, 0, 1, 1, 1, 1], test_size=0.5, seed=0)
    >>> len(s.train), len(s.test), sorted(c for c in s.test if c >= 4) != []
    (4, 4, True)
    """
    ids_list, cats = _check(ids, categories)
    n = len(ids_list)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.number)):
        raise TypeError(f"test_size must be a fraction or a count; got {test_size!r}")
    if isinstance(test_size, (int, np.integer)):
        n_test = int(test_size)
    elif 0.0 < float(test_size) < 1.0:
        n_test = round(float(test_size) * n)
    else:
        raise ValueError(f"test_size must be in (0, 1) as a fraction; got {test_size!r}")
    if not 1 <= n_test < n:
        raise ValueError(f"test_size leaves {n_test} of {n} ids for the test set; need 1 to "
                         f"{n - 1}")
    rng = np.random.default_rng(seed)
    labels, inverse = np.unique(np.asarray(cats, dtype=object).astype(str), return_inverse=True)
    # largest-remainder rounding of each category's share, so the total is exactly n_test
    counts = np.bincount(inverse, minlength=len(labels))
    quota = counts * n_test / n
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_test - int(take.sum())]] += 1
    test = np.zeros(n, dtype=bool)
    for c in range(len(labels)):
        members = np.flatnonzero(inverse == c)
        if seed is not None:
            members = rng.permutation(members)
        test[members[: take[c]]] = True
    return Split([i for i, t in zip(ids_list, test) if not t],
                 [i for i, t in zip(ids_list, test) if t])


def _deal(cats: list, k: int, seed: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels, inverse = np.unique(np.asarray(cats, dtype=object).astype(str), return_inverse=True)
    fold_of = np.empty(len(cats), dtype=int)
    start = 0
    for c in range(len(labels)):
        members = np.flatnonzero(inverse == c)
        if seed is not None:
            members = rng.permutation(members)
        fold_of[members] = (start + np.arange(len(members))) % k
        start = (start + len(members)) % k  # the next category continues the round
    return fold_of


def _check(ids: Iterable[Hashable], categories: Sequence | None) -> tuple[list, list]:
    ids_list = check_distinct_ids("ids", [_plain(i) for i in ids])
    if categories is None:
        return ids_list, [0] * len(ids_list)
    cats = [_plain(c) for c in categories]
    if len(cats) != len(ids_list):
        raise ValueError(f"categories must give one label per id ({len(ids_list)}); "
                         f"got {len(cats)}")
    return ids_list, cats


def _plain(value):
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value
