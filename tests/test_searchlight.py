"""Searchlight: neighbourhoods and RDMs equal to rsatoolbox, crossnobis equal to the ROI path,
blocks / shards / 2 gloo processes equal one process, maps and group statistics against
references, the demo map recovers the planted IT-like region, the CLI end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
import tempfile
import warnings

import nibabel as nib
import numpy as np
import pytest
import rsatoolbox
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rsatoolbox.data import Dataset
from rsatoolbox.util.searchlight import get_searchlight_RDMs, get_volume_searchlight
from scipy import stats

import brainrdl
from brainrdl.analysis.searchlight import (
    group_searchlight,
    plot_searchlight,
    searchlight_noise_ceiling,
    searchlight_permutation_test,
    searchlight_values,
)
from data_adapters.fmri import (
    merge_searchlight_shards,
    noise_from_measurements,
    precision_from_residuals,
    read_searchlight_rdms,
    searchlight_neighbourhoods,
    searchlight_rdms,
)
from data_adapters.fmri.searchlight import ball_offsets


def _quiet(fn, *args, **kwargs):
    """rsatoolbox prints, shows tqdm bars and warns (a NaN cast in its RDM concatenation)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _volume(seed=0, shape=(11, 10, 10), p=0.7):
    """A random mask around a solid core (so that threshold 1 keeps some centres)."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < p
    mask[2:9, 2:8, 2:8] = True
    return mask


# ----------------------------------------------------------------------------- neighbourhoods


@pytest.mark.parametrize(
    ("radius", "threshold", "truncate"),
    [(3, 1.0, False), (3, 0.6, False), (2, 0.5, False), (2.5, 0.0, True), (1.5, 0.8, True)],
)
def test_neighbourhoods_equal_rsatoolbox(radius, threshold, truncate):
    mask = _volume(1)
    nb = searchlight_neighbourhoods(mask, radius, threshold, truncate_at_boundary=truncate)
    centres, neighbours = _quiet(get_volume_searchlight, mask, radius, threshold, truncate)
    assert len(nb) == len(centres) > 0
    np.testing.assert_array_equal(nb.centres, centres)
    for mine, ref in zip(nb.as_lists(), neighbours):
        np.testing.assert_array_equal(mine, ref)  # same voxels, same order


def test_neighbourhoods_min_voxels_and_errors():
    mask = _volume(2)
    nb = searchlight_neighbourhoods(mask, 2, 0.0, truncate_at_boundary=True)
    few = searchlight_neighbourhoods(mask, 2, 0.0, truncate_at_boundary=True, min_voxels=15)
    assert len(few) < len(nb) and few.sizes.min() >= 15
    with pytest.raises(ValueError, match="radius"):
        searchlight_neighbourhoods(mask, -1)
    with pytest.raises(ValueError, match="threshold"):
        searchlight_neighbourhoods(mask, 2, 1.5)
    with pytest.raises(ValueError, match="no nonzero voxel"):
        searchlight_neighbourhoods(np.zeros((3, 3, 3)), 2)


# ----------------------------------------------------------------------------- RDMs


@pytest.mark.parametrize("method", ["correlation", "euclidean", "mahalanobis"])
def test_rdms_equal_rsatoolbox(method):
    mask = _volume(3)
    rng = np.random.default_rng(4)
    data = rng.normal(size=(14, mask.size)) + 0.5  # 7 conditions, 2 repeats averaged
    events = np.tile(np.arange(7), 2)
    centres, neighbours = _quiet(get_volume_searchlight, mask, 3, 0.6)
    ref = _quiet(get_searchlight_RDMs, data, centres, neighbours, events, method=method,
                 verbose=False)
    mine = searchlight_rdms(data, events, mask=mask, radius=3, threshold=0.6, method=method,
                            memory_budget=2e5, progress=False)  # several blocks
    assert isinstance(mine, rsatoolbox.rdm.RDMs)
    np.testing.assert_array_equal(mine.rdm_descriptors["voxel_index"],
                                  ref.rdm_descriptors["voxel_index"])
    np.testing.assert_allclose(mine.dissimilarities, ref.dissimilarities, rtol=1e-6, atol=1e-9)
    assert mine.dissimilarity_measure == method


@pytest.mark.parametrize(("method", "threshold", "truncate"),
                         [("correlation", 0.5, False), ("correlation", 0.0, True),
                          ("euclidean", 0.6, False)])
def test_shared_gram_runs_equal_rsatoolbox_across_blocks(method, threshold, truncate):
    """The Gram recurrence along runs of centres: a mask with holes and edges (so caps leave
    the mask and the volume), large per-voxel offsets (real betas), blocks of 3 centres and
    sub-blocks of 2 (runs cross both), against rsatoolbox."""
    from data_adapters.fmri import _gram_runs

    mask = _volume(5, p=0.6)
    rng = np.random.default_rng(6)
    data = rng.normal(size=(6, mask.size)) + rng.normal(scale=100.0, size=(1, mask.size))
    nb = searchlight_neighbourhoods(mask, 3, threshold, truncate_at_boundary=truncate)
    assert nb.spherical
    centres, neighbours = _quiet(get_volume_searchlight, mask, 3, threshold, truncate)
    ref = _quiet(get_searchlight_RDMs, data, centres, neighbours, np.arange(6), method=method,
                 verbose=False)
    kw = dict(mask=mask, neighbourhoods=nb, method=method, progress=False)
    stats: dict = {}
    small = searchlight_rdms(data, np.arange(6), memory_budget=1e5, stats=stats, **kw)
    block = stats["block_size"]
    runs = _gram_runs.run_starts(nb.centres, nb.shape, len(nb))
    assert 1 < block < 6
    # some run of consecutive centres crosses a block boundary (the recurrence restarts there)
    assert (~runs[block::block]).any()
    np.testing.assert_allclose(small.dissimilarities, ref.dissimilarities, rtol=1e-6, atol=1e-9)
    original = _gram_runs.SUB_BLOCK
    try:
        _gram_runs.SUB_BLOCK = 2
        tiny = searchlight_rdms(data, np.arange(6), memory_budget=1e9, **kw)
    finally:
        _gram_runs.SUB_BLOCK = original
    np.testing.assert_allclose(tiny.dissimilarities, ref.dissimilarities, rtol=1e-6, atol=1e-9)
    # hand-made neighbourhoods (spherical=False) take the full-Gram path: the same numbers
    full = searchlight_rdms(data, np.arange(6), neighbourhoods=dataclasses.replace(
        nb, spherical=False), **{k: v for k, v in kw.items() if k != "neighbourhoods"})
    np.testing.assert_allclose(full.dissimilarities, ref.dissimilarities, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(small.dissimilarities, full.dissimilarities, rtol=1e-9,
                               atol=1e-12)


def test_gram_runs_kernel_paths_agree():
    """GramRuns directly: the torch cumsum (CUDA's) and numpy (CPU's) sums along runs, sub-blocks
    of 1 and of the whole block, and the full-Gram path give the same RDM vectors."""
    from data_adapters.fmri._gram_runs import GramRuns

    mask = _volume(9)
    nb = searchlight_neighbourhoods(mask, 2, 0.5)
    used = np.unique(nb.indices[nb.indices >= 0])
    rng = np.random.default_rng(10)
    table = torch.as_tensor(np.vstack([rng.normal(size=(used.size, 4)), np.zeros((1, 4))]))
    position = np.full(mask.size + 1, used.size)
    position[used] = np.arange(used.size)
    columns = torch.as_tensor(position[nb.indices])
    recurrence = (nb.centres, nb.shape, ball_offsets(2), position[:-1], len(nb))
    results = []
    for sub, numpy_cumsum, rec in [(None, True, recurrence), (1, True, recurrence),
                                   (len(nb), False, recurrence), (7, True, None)]:
        kernel = GramRuns(table, columns, nb.sizes, "correlation", rec, sub_block=sub)
        kernel.numpy_cumsum = numpy_cumsum
        out = torch.empty(len(nb), 6, dtype=torch.float64)
        kernel.block(0, len(nb), out)
        results.append(out.numpy())
    assert np.isfinite(results[0]).all() and results[0].std() > 0
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-10, atol=1e-12)


def test_gram_runs_restart_in_pieces_for_threads():
    """A block of > CHUNK centres splits into pieces (runs restart there) that worker threads
    share: 1 and 2 threads give the same RDMs, equal to whole-sphere Grams."""
    from data_adapters.fmri._gram_runs import CHUNK, run_starts

    mask = np.ones((10, 10, 12), bool)
    nb = searchlight_neighbourhoods(mask, 2, 0.5)
    assert len(nb) > 2 * CHUNK
    starts = run_starts(nb.centres, nb.shape, len(nb))
    assert starts[CHUNK] and not run_starts(nb.centres, nb.shape, len(nb), len(nb))[CHUNK]
    data = np.random.default_rng(11).normal(size=(4, mask.size))
    kw = dict(mask=mask, method="correlation", memory_budget=1e9, progress=False)
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            results.append(searchlight_rdms(data, np.arange(4), neighbourhoods=nb, **kw))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(results[1].dissimilarities, results[0].dissimilarities)
    full = searchlight_rdms(data, np.arange(4), neighbourhoods=dataclasses.replace(
        nb, spherical=False), **kw)
    np.testing.assert_allclose(results[0].dissimilarities, full.dissimilarities, rtol=1e-9,
                               atol=1e-12)


def test_shared_gram_runs_shards_equal_one_pass(tmp_path):
    """Shards compute exactly the blocks of one pass, recurrence restarts included."""
    mask = _volume(7)
    data = np.random.default_rng(8).normal(size=(5, mask.size))
    kw = dict(mask=mask, radius=2, threshold=0.5, memory_budget=2e4, progress=False)
    whole = searchlight_rdms(data, np.arange(5), **kw)
    parts = [searchlight_rdms(data, np.arange(5), shard=(i, 3), out=tmp_path / f"p{i}.h5",
                              **kw) for i in range(3)]
    merged = read_searchlight_rdms(merge_searchlight_shards(parts, tmp_path / "m.h5"))
    np.testing.assert_array_equal(merged.dissimilarities, whole.dissimilarities)
    threads = torch.get_num_threads()
    try:  # blocks on 3 worker threads: the same numbers
        torch.set_num_threads(3)
        threaded = searchlight_rdms(data, np.arange(5), **kw)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(threaded.dissimilarities, whole.dissimilarities)


def test_nifti_and_masked_array_inputs_agree(tmp_path):
    mask = _volume(5)
    rng = np.random.default_rng(6)
    data = rng.normal(size=(8, mask.size))
    conds = np.repeat(["a", "b", "c", "d"], 2)
    full = searchlight_rdms(data, conds, mask=mask, radius=2, progress=False)
    img = nib.Nifti1Image(data.T.reshape(*mask.shape, 8).astype(np.float64), np.eye(4))
    nib.save(img, tmp_path / "betas.nii")
    nib.save(nib.Nifti1Image(mask.astype(np.int8), np.eye(4)), tmp_path / "mask.nii")
    from_file = searchlight_rdms(tmp_path / "betas.nii", conds, mask=tmp_path / "mask.nii",
                                 radius=2, progress=False)
    masked = searchlight_rdms(data[:, mask.reshape(-1)], conds, mask=mask, radius=2,
                              progress=False)
    np.testing.assert_allclose(from_file.dissimilarities, full.dissimilarities, rtol=1e-12)
    np.testing.assert_array_equal(masked.dissimilarities, full.dissimilarities)
    assert list(full.pattern_descriptors["stimulus"]) == ["a", "b", "c", "d"]


def _design(n_cond=5, n_runs=4, seed=7, shape=(7, 6, 6)):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.7
    data = rng.normal(size=(n_cond * n_runs, mask.size))
    conds = np.tile([f"c{i}" for i in range(n_cond)], n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    return mask, data, conds, runs


@pytest.mark.parametrize("noise", [None, "diag", "shrinkage_diag", "residuals"])
@pytest.mark.parametrize("method", ["crossnobis", "mahalanobis"])
def test_noise_methods_equal_roi_path(method, noise):
    """Each searchlight equals brainrdl.calc_rdm on that neighbourhood's Dataset, with the
    precision estimated from that neighbourhood alone."""
    mask, data, conds, runs = _design()
    residuals = np.random.default_rng(8).normal(size=(40, mask.size))
    arg = residuals if noise == "residuals" else noise
    out = searchlight_rdms(data, conds, runs, mask=mask, radius=2, threshold=0.5,
                           method=method, noise=arg, memory_budget=5e5, progress=False)
    nb = searchlight_neighbourhoods(mask, 2, 0.5)
    assert out.n_rdm == len(nb)
    for i in range(0, len(nb), 7):
        v = nb.neighbours(i)
        ds = Dataset(data[:, v], obs_descriptors={"stimulus": conds, "run": runs})
        if noise is None:
            prec = None
        elif noise == "residuals":
            prec = precision_from_residuals(residuals[:, v])
        else:
            prec = noise_from_measurements(ds, "stimulus", method=noise)
        ref = brainrdl.calc_rdm(ds, method=method, descriptor="stimulus", noise=prec,
                                cv_descriptor="run" if method == "crossnobis" else None)
        np.testing.assert_allclose(out.dissimilarities[i], ref.dissimilarities[0], rtol=1e-6,
                                   atol=1e-10)


def test_unbalanced_crossnobis_equals_roi_path():
    """An extra repeat of one condition in one run (unbalanced folds): the general estimator."""
    mask, data, conds, runs = _design()
    extra = np.random.default_rng(12).normal(size=(1, data.shape[1]))
    data, conds, runs = np.vstack([data, extra]), np.append(conds, "c0"), np.append(runs, 0)
    out = searchlight_rdms(data, conds, runs, mask=mask, radius=2, threshold=0.5,
                           method="crossnobis", progress=False)
    nb = searchlight_neighbourhoods(mask, 2, 0.5)
    for i in range(0, len(nb), 11):
        ds = Dataset(data[:, nb.neighbours(i)], obs_descriptors={"stimulus": conds, "run": runs})
        ref = brainrdl.calc_rdm(ds, method="crossnobis", descriptor="stimulus",
                                cv_descriptor="run")
        np.testing.assert_allclose(out.dissimilarities[i], ref.dissimilarities[0], rtol=1e-6,
                                   atol=1e-10)


def test_crossnobis_default_folds_equal_rsatoolbox():
    """Without runs, folds are rsatoolbox's default (k-th repeat of each condition in fold k).

    rsatoolbox's own get_searchlight_RDMs fails for crossnobis (its RDM concatenation raises a
    shape error), so the reference is rsatoolbox's calc_rdm on each neighbourhood."""
    mask, data, conds, _ = _design(n_cond=4, n_runs=3, shape=(5, 5, 5))
    centres, neighbours = _quiet(get_volume_searchlight, mask, 2, 0.5)
    mine = searchlight_rdms(data, conds, mask=mask, radius=2, threshold=0.5,
                            method="crossnobis", progress=False)
    np.testing.assert_array_equal(mine.rdm_descriptors["voxel_index"], centres)
    for i in range(0, len(centres), 5):
        ds = Dataset(data[:, neighbours[i]], obs_descriptors={"events": conds})
        ref = rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="events")
        np.testing.assert_allclose(mine.dissimilarities[i], ref.dissimilarities[0], rtol=1e-6,
                                   atol=1e-10)


def test_blocks_hdf5_and_shards_equal_one_pass(tmp_path):
    mask, data, conds, runs = _design(seed=9)
    kw = dict(mask=mask, radius=2, threshold=0.5, method="crossnobis", noise="shrinkage_diag",
              progress=False)
    whole = searchlight_rdms(data, conds, runs, memory_budget=1e9, **kw)
    small = searchlight_rdms(data, conds, runs, memory_budget=3e5, **kw)
    np.testing.assert_allclose(small.dissimilarities, whole.dissimilarities, rtol=1e-12)
    path = searchlight_rdms(data, conds, runs, memory_budget=3e5, out=tmp_path / "sl.h5", **kw)
    stored = read_searchlight_rdms(path)
    np.testing.assert_array_equal(stored.dissimilarities, small.dissimilarities)
    np.testing.assert_array_equal(stored.rdm_descriptors["voxel_index"],
                                  small.rdm_descriptors["voxel_index"])
    parts = [searchlight_rdms(data, conds, runs, memory_budget=3e5, shard=(i, 3),
                              out=tmp_path / f"p{i}.h5", **kw) for i in range(3)]
    merged = read_searchlight_rdms(merge_searchlight_shards(parts[::-1], tmp_path / "m.h5"))
    np.testing.assert_array_equal(merged.dissimilarities, small.dissimilarities)
    with pytest.raises(ValueError, match="parts"):
        merge_searchlight_shards(parts[:2], tmp_path / "bad.h5")


def test_bad_inputs_are_named():
    mask, data, conds, runs = _design()
    with pytest.raises(ValueError, match="conditions has 3 labels"):
        searchlight_rdms(data, conds[:3], mask=mask, radius=2, progress=False)
    with pytest.raises(ValueError, match="columns"):
        searchlight_rdms(data[:, :10], conds, mask=mask, radius=2, progress=False)
    with pytest.raises(ValueError, match="noise is only used"):
        searchlight_rdms(data, conds, mask=mask, noise="diag", progress=False)
    with pytest.raises(ValueError, match="method"):
        searchlight_rdms(data, conds, mask=mask, method="cosine", progress=False)
    bad_runs = runs.copy()
    bad_runs[0] = 1  # condition c0 now never occurs in run 0
    with pytest.raises(ValueError, match="no observation in fold"):
        searchlight_rdms(data, conds, bad_runs, mask=mask, radius=2, method="crossnobis",
                         progress=False)
    nan_data = data.copy()
    nan_data[0, searchlight_neighbourhoods(mask, 2).centres[0]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        searchlight_rdms(nan_data, conds, mask=mask, radius=2, progress=False)
    with pytest.raises(ValueError, match="outside the mask"):
        searchlight_rdms(data[:, mask.reshape(-1)], conds, mask=mask, radius=2, threshold=0.5,
                         progress=False)


@pytest.mark.gpu
def test_cuda_equals_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    mask, data, conds, runs = _design()
    for method, noise in [("correlation", None), ("crossnobis", "shrinkage_diag")]:
        kw = dict(mask=mask, radius=2, threshold=0.5, method=method, noise=noise,
                  progress=False)
        cpu = searchlight_rdms(data, conds, runs, **kw)
        gpu = searchlight_rdms(data, conds, runs, device="cuda", **kw)
        np.testing.assert_allclose(gpu.dissimilarities, cpu.dissimilarities, rtol=1e-8,
                                   atol=1e-10)


# ----------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mask, data, conds, runs = _design(seed=11)
        rdms = searchlight_rdms(data, conds, runs, mask=mask, radius=2, threshold=0.5,
                                method="crossnobis", memory_budget=3e5, progress=False)
        np.save(os.path.join(folder, f"rank{rank}.npy"), rdms.dissimilarities)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process():
    mask, data, conds, runs = _design(seed=11)
    single = searchlight_rdms(data, conds, runs, mask=mask, radius=2, threshold=0.5,
                              method="crossnobis", memory_budget=3e5, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_dist_worker, args=(2, _free_port(), folder), nprocs=2, join=True)
        for rank in range(2):
            gathered = np.load(os.path.join(folder, f"rank{rank}.npy"))
            np.testing.assert_array_equal(gathered, single.dissimilarities)


# ----------------------------------------------------------------------------- maps and stats


def _sl_rdms(n_centres=12, n_cond=6, seed=0):
    rng = np.random.default_rng(seed)
    k = n_cond * (n_cond - 1) // 2
    return rsatoolbox.rdm.RDMs(rng.random((n_centres, k)),
                               rdm_descriptors={"voxel_index": np.arange(n_centres) * 2},
                               pattern_descriptors={"stimulus": [f"s{i}" for i in range(n_cond)]})


@pytest.mark.parametrize("method", ["corr", "spearman", "cosine", "tau-a"])
def test_values_equal_rsatoolbox_compare(method):
    data = _sl_rdms()
    models = rsatoolbox.rdm.RDMs(np.random.default_rng(1).random((3, 15)),
                                 rdm_descriptors={"layer": ["a", "b", "c"]})
    names, values, voxel_index = searchlight_values(models, data, method=method)
    assert names == ["a", "b", "c"]
    np.testing.assert_allclose(values, rsatoolbox.rdm.compare(models, data, method), rtol=1e-9)
    np.testing.assert_array_equal(voxel_index, data.rdm_descriptors["voxel_index"])


def test_map_places_values_at_centres_and_reorders_models():
    data = _sl_rdms()
    mask = nib.Nifti1Image(np.ones((4, 3, 2), np.int8), np.diag([2.0, 2, 2, 1]))
    rng = np.random.default_rng(2)
    model = rsatoolbox.rdm.RDMs(rng.random((1, 15)), rdm_descriptors={"name": ["m"]},
                                pattern_descriptors={"stimulus": [f"s{i}" for i in range(6)]})
    maps = brainrdl.searchlight_map(model, data, mask_img=mask)
    img = maps["m"]
    assert isinstance(img, nib.Nifti1Image) and img.shape == (4, 3, 2)
    np.testing.assert_allclose(img.affine, mask.affine)
    vol = np.asarray(img.dataobj).reshape(-1)
    expect = rsatoolbox.rdm.compare(model, data, "corr")[0]
    np.testing.assert_allclose(vol[data.rdm_descriptors["voxel_index"]], expect, rtol=1e-6)
    assert vol[1] == 0  # not a centre
    # the same model with its conditions listed in another order gives the same map
    order = np.array([3, 1, 5, 0, 2, 4])
    shuffled = model.copy() if hasattr(model, "copy") else model
    shuffled = rsatoolbox.rdm.RDMs(model.get_matrices()[:, order][:, :, order],
                                   pattern_descriptors={"stimulus": [f"s{i}" for i in order]})
    again = brainrdl.searchlight_map(shuffled, data, mask_img=mask)["rdm_0"]
    np.testing.assert_allclose(np.asarray(again.dataobj), np.asarray(img.dataobj), rtol=1e-6)
    single = brainrdl.searchlight_map(model.get_vectors()[0], data, mask_img=mask)
    assert isinstance(single, nib.Nifti1Image)
    with pytest.raises(ValueError, match="upper triangle"):
        brainrdl.searchlight_map(np.ones(10), data, mask_img=mask)


def test_group_t_and_exact_sign_flip_fwe():
    rng = np.random.default_rng(3)
    n_sub, shape = 5, (3, 3, 2)
    vols = rng.normal(size=(n_sub, *shape))
    vols[:, 0, 0, 0] += 4.0
    maps = [nib.Nifti1Image(v.astype(np.float32), np.eye(4)) for v in vols]
    mask = nib.Nifti1Image(np.ones(shape, np.int8), np.eye(4))
    res = group_searchlight(maps, mask_img=mask, n_permutations=100)
    x = vols.reshape(n_sub, -1).astype(np.float32).astype(np.float64)
    t_ref = stats.ttest_1samp(x, 0).statistic
    np.testing.assert_allclose(np.asarray(res.t.dataobj).reshape(-1), t_ref, rtol=1e-5)
    # brute force over all 2^5 flips: max-t distribution and FWE p-values
    signs = np.array([[1 - 2 * ((c >> s) & 1) for s in range(n_sub)] for c in range(2**n_sub)])
    max_t = np.array([stats.ttest_1samp(x * sg[:, None], 0).statistic.max() for sg in signs])
    p_ref = (max_t[None, :] >= t_ref[:, None]).mean(1)
    assert res.exact and res.n_permutations == 32
    np.testing.assert_allclose(np.asarray(res.p_fwe.dataobj).reshape(-1), p_ref, rtol=1e-6)
    # random flips (seeded) when 2^n exceeds the number asked
    res2 = group_searchlight(maps, mask_img=mask, n_permutations=20, seed=1)
    res3 = group_searchlight(maps, mask_img=mask, n_permutations=20, seed=1)
    assert not res2.exact and res2.n_permutations == 20
    np.testing.assert_array_equal(res2.max_t, res3.max_t)


@pytest.mark.parametrize("method", ["corr", "spearman", "cosine"])
def test_noise_ceiling_per_centre_equals_noise_ceiling(method):
    subs = [_sl_rdms(seed=s) for s in range(4)]
    mask = nib.Nifti1Image(np.ones((4, 3, 2), np.int8), np.eye(4))
    low, up = searchlight_noise_ceiling(subs, mask_img=mask, method=method)
    vi = subs[0].rdm_descriptors["voxel_index"]
    low_v = np.asarray(low.dataobj).reshape(-1)[vi]
    up_v = np.asarray(up.dataobj).reshape(-1)[vi]
    for c in range(len(vi)):
        ref = brainrdl.noise_ceiling(np.stack([s.dissimilarities[c] for s in subs]), method)
        np.testing.assert_allclose([low_v[c], up_v[c]], ref, rtol=1e-5, atol=1e-7)


def test_permutation_test_finds_planted_centre():
    rng = np.random.default_rng(4)
    model = rng.random(28)
    diss = rng.random((10, 28))
    diss[3] = model + 0.05 * rng.random(28)
    data = rsatoolbox.rdm.RDMs(diss, rdm_descriptors={"voxel_index": np.arange(10)})
    mask = nib.Nifti1Image(np.ones((5, 2, 1), np.int8), np.eye(4))
    res = searchlight_permutation_test(model, data, mask_img=mask, n_permutations=300)
    sig = np.asarray(res.significant.dataobj).reshape(-1)
    assert sig[3] == 1 and sig.sum() == 1
    assert res.threshold < np.asarray(res.value.dataobj).reshape(-1)[3]


def test_plot_names_colour_bar(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    img = nib.Nifti1Image(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32),
                          np.diag([3.0, 3, 3, 1]))
    display = plot_searchlight(img, kind="glass", colorbar_label="model fit (Pearson r)")
    assert display._cbar.ax.get_ylabel() == "model fit (Pearson r)"
    display.close()
    plot_searchlight(img, kind="stat", colorbar_label="t", output_file=tmp_path / "m.png",
                     display_mode="z", cut_coords=2)
    assert (tmp_path / "m.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- the demo volume


@pytest.fixture(scope="module")
def demo_maps(tmp_path_factory):
    from scipy.spatial.distance import pdist

    from data_adapters.demo import make_demo_study

    study = make_demo_study(tmp_path_factory.mktemp("demo"), n_stimuli=40, n_runs=4,
                            n_subjects=6, with_bold=False, with_nwb=False)
    atlas = nib.load(study.atlas)
    labels = np.asarray(atlas.dataobj)
    grey = nib.Nifti1Image((labels > 0).astype(np.int8), atlas.affine)  # the two regions
    sls = [searchlight_rdms(b, d, mask=grey, radius=3, truncate_at_boundary=True,
                            progress=False) for b, d in zip(study.betas, study.design)]
    n = len(study.stimulus_ids)
    category = (study.digit_labels[:, None] != study.digit_labels[None, :])[np.triu_indices(n, 1)]
    pixels = pdist(study.images.reshape(n, -1), "sqeuclidean")
    return study, labels, grey, sls, category.astype(float), pixels


@pytest.mark.slow
def test_demo_map_recovers_planted_region(demo_maps):
    """Single subject: centres where the IT-like model fits significantly (permutation FWE)
    and better than the EVC-like model lie inside the IT-like ROI (>= 90 %) and cover it."""
    study, labels, grey, sls, _, _ = demo_maps
    it = labels == study.labels["IT"]
    tests = {roi: searchlight_permutation_test(study.ground_truth[roi], sls[0], mask_img=grey,
                                               n_permutations=200) for roi in ("IT", "EVC")}
    value = {roi: np.asarray(t.value.dataobj) for roi, t in tests.items()}
    above = (np.asarray(tests["IT"].significant.dataobj) > 0) & (value["IT"] > value["EVC"])
    assert above.sum() > 0
    assert (above & it).sum() / above.sum() >= 0.9
    assert (above & it).sum() / it.sum() >= 0.9


@pytest.mark.slow
def test_demo_group_map_recovers_planted_region(demo_maps):
    """Group (6 subjects): category model minus pixel model, two-sided sign-flip max-|t| FWE:
    positive (category fits better) inside the IT-like ROI, negative inside the EVC-like ROI."""
    study, labels, grey, sls, category, pixels = demo_maps
    it = labels == study.labels["IT"]
    maps = brainrdl.searchlight_map({"category": category, "pixels": pixels}, sls,
                                    mask_img=grey)
    assert maps["category"].shape == (*labels.shape, 6)
    diff = np.asarray(maps["category"].dataobj) - np.asarray(maps["pixels"].dataobj)
    res = group_searchlight(nib.Nifti1Image(diff, grey.affine), mask_img=grey,
                            tail="two-sided")
    sig = np.asarray(res.significant.dataobj) > 0
    t = np.asarray(res.t.dataobj)
    assert res.exact and res.n_permutations == 64  # two-sided: smallest p is 2/64
    positive, negative = sig & (t > 0), sig & (t < 0)
    assert positive.sum() > 0 and (positive & it).sum() / positive.sum() >= 0.9
    evc = labels == study.labels["EVC"]
    assert negative.sum() > 0 and (negative & evc).sum() / negative.sum() >= 0.9
    low, up = searchlight_noise_ceiling(sls, mask_img=grey)
    low, up = np.asarray(low.dataobj), np.asarray(up.dataobj)
    assert (low[it] <= up[it] + 1e-9).all() and low[it].mean() > 0.2


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_maps_and_shards(tmp_path):
    from brainrdl.cli.main import main
    from data_adapters.demo import make_demo_study

    study = make_demo_study(tmp_path / "demo", n_stimuli=20, n_runs=3, with_bold=False,
                            with_nwb=False)
    atlas = nib.load(study.atlas)
    nib.save(nib.Nifti1Image((np.asarray(atlas.dataobj) > 0).astype(np.int8), atlas.affine),
             tmp_path / "mask.nii.gz")
    gt = study.ground_truth
    models = rsatoolbox.rdm.RDMs(
        np.vstack([gt["IT"].dissimilarities, gt["EVC"].dissimilarities]),
        rdm_descriptors={"name": ["IT model", "EVC model"]},
        pattern_descriptors={"stimulus": gt["IT"].pattern_descriptors["stimulus"]})
    models.save(str(tmp_path / "models.hdf5"), file_type="hdf5")
    common = ["--mask", str(tmp_path / "mask.nii.gz"), "--models", str(tmp_path / "models.hdf5"),
              "--truncate", "--radius", "2"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["searchlight", str(study.betas[0]), "--conditions", str(study.design[0]),
                     *common, "--out", str(tmp_path / "one")]) == 0
        for i in range(2):
            assert main(["searchlight", str(study.betas[0]), "--conditions",
                         str(study.design[0]), *common, "--shard", f"{i}/2",
                         "--memory-budget", "2e5", "--out", str(tmp_path / "parts")]) == 0
        shards = sorted(str(p) for p in (tmp_path / "parts").glob("*.shard-*.h5"))
        assert main(["searchlight", "--merge", *shards, *common, "--no-plots", "--out",
                     str(tmp_path / "merged")]) == 0
    one = nib.load(tmp_path / "one" / "IT_model.nii.gz")
    merged = nib.load(tmp_path / "merged" / "IT_model.nii.gz")
    assert (tmp_path / "one" / "IT_model.png").stat().st_size > 1000
    np.testing.assert_array_equal(np.asarray(merged.dataobj), np.asarray(one.dataobj))
    sl = searchlight_rdms(study.betas[0], study.design[0], mask=tmp_path / "mask.nii.gz",
                          radius=2, truncate_at_boundary=True, progress=False)
    ref = brainrdl.searchlight_map(models, sl, mask_img=tmp_path / "mask.nii.gz")["IT model"]
    np.testing.assert_allclose(np.asarray(one.dataobj), np.asarray(ref.dataobj), rtol=1e-6)
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        assert main(["searchlight", str(study.betas[0]), *common]) == 2
    assert "--conditions" in buf.getvalue()
