"""The --metric options of brainrdl compare: parsing, loading Datasets and layer patterns."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import rsatoolbox
import torch

from brainrdl import compare_layers
from brainrdl.cli.compare_metric import add_metric_argument, metric_kwargs, pattern_inputs
from brainrdl.stats.cka import cka


def _parser():
    parser = argparse.ArgumentParser()
    add_metric_argument(parser)
    return parser


def test_metric_kwargs_per_metric():
    p = _parser()
    assert metric_kwargs(p.parse_args([])) == {}
    enc = metric_kwargs(p.parse_args(["--metric", "encoding", "--alphas", "1", "10",
                                      "--scoring", "r2"]))
    assert enc == {"n_folds": 5, "scoring": "r2", "alphas": [1.0, 10.0]}
    assert metric_kwargs(p.parse_args(["--metric", "procrustes", "--whiten", "0.5"])) == {
        "alpha": 0.5}
    with pytest.raises(SystemExit):
        p.parse_args(["--metric", "nope"])


def test_pattern_inputs_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    ids = [f"s{i}" for i in range(n)]
    paths = []
    for s in range(2):
        ds = rsatoolbox.data.Dataset(rng.standard_normal((n, 7)),
                                     obs_descriptors={"stimulus": ids[::-1]})
        path = tmp_path / f"it{s}.hdf5"
        ds.save(str(path), file_type="hdf5")
        paths.append(("IT", str(path)))
    layers = {"a": rng.standard_normal((n, 5)), "b": rng.standard_normal((n, 3))}
    np.savez(tmp_path / "layers.npz", **layers)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    args = _parser().parse_args(["--metric", "cka", "--layer-patterns",
                                 str(tmp_path / "layers.npz"), "--stimulus-ids",
                                 str(tmp_path / "ids.txt")])
    brain, loaded, got_ids = pattern_inputs(args, paths)
    assert len(brain["IT"]) == 2 and got_ids == ids
    table = compare_layers(loaded, brain, metric=args.metric, stimulus_ids=got_ids,
                           metric_kwargs=metric_kwargs(args))
    y0 = torch.tensor(brain["IT"][0].measurements[::-1].copy())
    y1 = torch.tensor(brain["IT"][1].measurements[::-1].copy())
    ref = (float(cka(torch.tensor(layers["a"]), y0)) + float(cka(torch.tensor(layers["a"]), y1)))
    assert float(table.loc[table["layer"] == "a", "similarity"].iloc[0]) == pytest.approx(ref / 2)


def test_pattern_inputs_errors(tmp_path):
    args = _parser().parse_args(["--metric", "cka"])
    with pytest.raises(FileNotFoundError, match="--brain"):
        pattern_inputs(args, [("IT", str(tmp_path / "missing.hdf5"))])
    (tmp_path / "x.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match="hdf5"):
        pattern_inputs(args, [("IT", str(tmp_path / "x.pkl"))])


def test_cli_compare_with_a_pattern_metric_end_to_end(tmp_path):
    """``brainrdl compare --metric cka`` from saved layer patterns and brain Datasets: the CSV's
    similarity is brainrdl.cka of the same patterns (one subject, no bootstrap)."""
    import pandas as pd

    from brainrdl.cli.main import main

    rng = np.random.default_rng(3)
    n = 15
    ids = [f"s{i}" for i in range(n)]
    voxels = rng.normal(size=(n, 20))
    ds = rsatoolbox.data.Dataset(voxels, obs_descriptors={"stimulus": ids})
    ds.save(str(tmp_path / "it.hdf5"), file_type="hdf5")
    layer = voxels @ rng.normal(size=(20, 8)) + 0.5 * rng.normal(size=(n, 8))
    np.savez(tmp_path / "layers.npz", fc=layer, noise=rng.normal(size=(n, 8)))
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    code = main(["compare", "--metric", "cka", "--layer-patterns", str(tmp_path / "layers.npz"),
                 "--stimulus-ids", str(tmp_path / "ids.txt"),
                 "--brain", f"IT={tmp_path / 'it.hdf5'}", "--n-bootstrap", "0",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    table = pd.read_csv(tmp_path / "out" / "comparison.csv").set_index("layer")
    assert set(table["metric"]) == {"cka"}
    expected = float(cka(torch.tensor(layer), torch.tensor(voxels)))
    assert table.loc["fc", "similarity"] == pytest.approx(expected, rel=1e-6)
    assert table.loc["fc", "similarity"] > table.loc["noise", "similarity"]
