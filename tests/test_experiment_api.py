"""The held-out experiment API: stimulus splits, BrainTeacher.subset, compare_layers options."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs
from rsatoolbox.rdm import compare as rsa_compare

import brainrdl
from brainrdl.datasets.kriegeskorte2008 import prepare_images
from brainrdl.datasets.splits import kfold_stimuli, split_stimuli


def _rdms(n_rdm=4, n=10, seed=0, ids=None, subjects=None):
    rng = np.random.default_rng(seed)
    pd_ = {"stimulus": list(range(n)) if ids is None else list(ids)}
    rd = {} if subjects is None else {"subject": list(subjects)}
    return RDMs(rng.random((n_rdm, n * (n - 1) // 2)), rdm_descriptors=rd, pattern_descriptors=pd_)


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_is_a_stratified_partition(k):
    cats = ["a"] * 21 + ["b"] * 12 + ["c"] * 23 + ["d"] * 12
    ids = [f"s{i}" for i in range(len(cats))]
    folds = kfold_stimuli(ids, cats, k=k, seed=3)
    tests = [t for f in folds for t in f.test]
    assert sorted(tests) == sorted(ids)  # each id tested exactly once
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    cat_of = dict(zip(ids, cats))
    for c in set(cats):
        per_fold = [Counter(cat_of[i] for i in f.test)[c] for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    for f in folds:
        assert set(f.train).isdisjoint(f.test) and len(f.train) + len(f.test) == len(ids)
        assert f.train == [i for i in ids if i in set(f.train)]  # the order of ids


def test_kfold_is_seeded_and_seeds_differ():
    ids, cats = list(range(40)), [i % 4 for i in range(40)]
    a = kfold_stimuli(ids, cats, k=4, seed=1)
    assert a == kfold_stimuli(ids, cats, k=4, seed=1)
    assert a != kfold_stimuli(ids, cats, k=4, seed=2)


def test_split_stimuli_keeps_category_shares_and_exact_size():
    cats = ["x"] * 30 + ["y"] * 10
    s = split_stimuli(np.arange(40), cats, test_size=0.25, seed=0)
    assert len(s.test) == 10 and len(s.train) == 30
    assert sum(i >= 30 for i in s.test) in (2, 3)  # y's share 10 * 0.25 = 2.5
    assert all(isinstance(i, int) for i in s.train)  # NumPy ids become plain ints
    assert len(split_stimuli(range(10), test_size=3).test) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ids": [1, 1, 2]}, "distinct"), ({"categories": [0]}, "one label per id"),
     ({"k": 1}, "k must be"), ({"k": 9}, "k must be")],
)
def test_split_errors_are_named(kwargs, match):
    args = {"ids": [1, 2, 3, 4], "categories": None, "k": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        kfold_stimuli(**args)


def test_top_level_names():
    assert brainrdl.kfold_stimuli is kfold_stimuli and brainrdl.split_stimuli is split_stimuli
    from brainrdl.datasets.kriegeskorte2008 import load_kriegeskorte2008

    assert brainrdl.load_kriegeskorte2008 is load_kriegeskorte2008


# --------------------------------------------------------------------------- teacher subset


def test_brain_teacher_subset_equals_teacher_built_on_the_sub_rdms():
    brain = _rdms(3, 8, seed=1, ids=[f"im{i}" for i in range(8)])
    keep = ["im5", "im1", "im2", "im7"]
    sub = brainrdl.BrainTeacher(brain).subset(keep)
    direct = brainrdl.BrainTeacher(brain.subset_pattern("stimulus", keep))
    batch = ["im7", "im1", "im0", "im5"]  # im0 is outside the subset
    got, want = sub.targets(None, batch)["brain"], direct.targets(None, batch)["brain"]
    assert torch.equal(got.pair_mask, want.pair_mask) and not bool(got.pair_mask[2].any())
    torch.testing.assert_close(got.rdm, want.rdm)
    assert sub.stimulus_ids == keep
    with pytest.raises(ValueError, match="not stimuli of this teacher"):
        brainrdl.BrainTeacher(brain).subset(["im1", "nope"])


# --------------------------------------------------------------------------- compare_layers


def test_restrict_both_directions_equals_comparing_the_sub_rdms():
    brain = _rdms(4, 12, seed=2, subjects=["a", "a", "b", "b"])
    held = [3, 7, 1, 9, 10]
    layers_held = RDMs(np.random.default_rng(3).random((2, 10)),
                       rdm_descriptors={"layer": ["l1", "l2"]},
                       pattern_descriptors={"stimulus": held})
    with pytest.raises(ValueError, match="restrict"):
        brainrdl.compare_layers(layers_held, {"IT": brain})
    t = brainrdl.compare_layers(layers_held, {"IT": brain}, restrict=True)
    brain_held = brain.subset_pattern("stimulus", held)  # rsatoolbox's own restriction
    # rsatoolbox keeps the brain's order; the layer RDMs are reordered to it
    expected = rsa_compare(_reorder(layers_held, brain_held), brain_held, "corr").mean(1)
    np.testing.assert_allclose(t["similarity"], expected, rtol=1e-10)
    low, _high = boot_noise_ceiling(brain_held, method="corr", rdm_descriptor="subject")
    np.testing.assert_allclose(t["noise_ceiling_low"], low, rtol=1e-6)
    # the other direction: layers over all 12, a brain region over 5 of them
    layers_all = RDMs(np.random.default_rng(4).random((1, 66)), rdm_descriptors={"layer": ["l"]},
                      pattern_descriptors={"stimulus": list(range(12))})
    t2 = brainrdl.compare_layers(layers_all, {"IT": brain_held}, restrict=True)
    expected2 = rsa_compare(layers_all.subset_pattern("stimulus", brain_held.pattern_descriptors[
        "stimulus"]), brain_held, "corr").mean()
    assert t2["similarity"].iloc[0] == pytest.approx(expected2, rel=1e-10)


def _reorder(layers, brain):
    order = [list(layers.pattern_descriptors["stimulus"]).index(s)
             for s in brain.pattern_descriptors["stimulus"]]
    mats = layers.get_matrices()[:, order][:, :, order]
    return RDMs(mats, rdm_descriptors=layers.rdm_descriptors,
                pattern_descriptors=brain.pattern_descriptors)


def test_pooled_scores_against_the_mean_rdm():
    brain = _rdms(4, 9, seed=5, subjects=["a", "a", "b", "b"])
    layers = RDMs(np.random.default_rng(6).random((2, 36)), rdm_descriptors={"layer": ["x", "y"]},
                  pattern_descriptors={"stimulus": list(range(9))})
    t = brainrdl.compare_layers(layers, {"IT": brain}, pooled=True, method="spearman")
    mean = RDMs(brain.get_vectors().mean(0, keepdims=True))
    np.testing.assert_allclose(t["similarity"], rsa_compare(layers, mean, "spearman")[:, 0],
                               rtol=1e-10)
    assert t["noise_ceiling_low"].isna().all()


def test_nan_layer_rdm_is_nan_with_a_warning_and_never_best():
    brain = _rdms(3, 8, seed=7)
    v = np.random.default_rng(8).random((2, 28))
    good = rsa_compare(RDMs(v[:1]), brain, "corr").mean()
    v[1] = brain.get_vectors().mean(0)  # the better layer ...
    v[1, 4] = np.nan  # ... with one undefined pair
    layers = RDMs(v, rdm_descriptors={"layer": ["ok", "nan"]})
    with pytest.warns(UserWarning, match=r"\['nan'\].*NaN"):
        t = brainrdl.compare_layers(layers, brain, n_bootstrap=20, seed=0, per_subject=True)
    pooled = t[t["subject"] == "all"].set_index("layer")
    assert np.isnan(pooled.loc["nan", "similarity"]) and np.isnan(pooled.loc["nan", "ci_low"])
    assert pooled.loc["ok", "best"] and not pooled.loc["nan", "best"]
    assert pooled.loc["ok", "similarity"] == pytest.approx(good, rel=1e-10)
    assert not t[t["layer"] == "nan"]["best"].any()


# --------------------------------------------------------------------------- subject grouping


def test_subject_descriptor_auto_groups_sessions_in_both_functions():
    brain = _rdms(6, 9, seed=9, subjects=["a", "a", "b", "b", "c", "c"])
    by_subject = boot_noise_ceiling(brain, method="corr", rdm_descriptor="subject")
    by_rdm = boot_noise_ceiling(brain, method="corr", rdm_descriptor="index")
    np.testing.assert_allclose(brainrdl.noise_ceiling(brain, "corr"), by_subject, rtol=1e-6)
    np.testing.assert_allclose(brainrdl.noise_ceiling(brain, "corr", subject_descriptor=None),
                               by_rdm, rtol=1e-6)
    np.testing.assert_allclose(brainrdl.noise_ceiling(brain, "corr", rdm_descriptor="index"),
                               by_rdm, rtol=1e-6)
    layers = RDMs(np.random.default_rng(1).random((1, 36)), rdm_descriptors={"layer": ["l"]})
    t = brainrdl.compare_layers(layers, brain, per_subject=True)
    assert sorted(t["subject"].unique()) == ["a", "all", "b", "c"]
    assert t["noise_ceiling_low"].iloc[0] == pytest.approx(by_subject[0], rel=1e-6)
    t_none = brainrdl.compare_layers(layers, brain, subject_descriptor=None)
    assert t_none["noise_ceiling_low"].iloc[0] == pytest.approx(by_rdm[0], rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        brainrdl.noise_ceiling(_rdms(3, 5), "corr")  # no subject descriptor: each RDM alone


# --------------------------------------------------------------------------- image helpers


def test_prepare_images_resizes_and_normalises():
    x = torch.rand(4, 3, 175, 175, generator=torch.Generator().manual_seed(0))
    out = prepare_images(x, size=64, normalize="imagenet")
    assert tuple(out.shape) == (4, 3, 64, 64)
    ref = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    torch.testing.assert_close(out, (ref - mean) / std)
    own = prepare_images(x, normalize="images")
    torch.testing.assert_close(own.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="normalize='bgr'"):
        prepare_images(x, normalize="bgr")
