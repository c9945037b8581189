"""``brainrdl compare``: saved RDMs or a checkpoint + image folder -> CSV + PNG."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import torch
from rsatoolbox.rdm import RDMs, compare
from torch import nn

from brainrdl.cli.main import main

N = 8
K = N * (N - 1) // 2


def _brain(tmp_path):
    rng = np.random.default_rng(0)
    brain = RDMs(rng.random((4, K)), rdm_descriptors={"subject": [1, 1, 2, 2]},
                 pattern_descriptors={"stimulus": [f"s{i}" for i in range(N)]})  # fmt: skip
    path = tmp_path / "it.hdf5"
    brain.save(str(path), file_type="hdf5")
    return brain, path


def test_saved_rdms(tmp_path):
    brain, brain_path = _brain(tmp_path)
    layers = RDMs(np.random.default_rng(1).random((3, K)),
                  rdm_descriptors={"layer": ["a", "b", "c"]},
                  pattern_descriptors={"stimulus": [f"s{i}" for i in range(N)]})  # fmt: skip
    layers.save(str(tmp_path / "layers.pkl"), file_type="pkl")
    out = tmp_path / "out"
    rc = main(["compare", "--layers", str(tmp_path / "layers.pkl"), "--brain",
               f"IT={brain_path}", "--subject-descriptor", "subject", "--n-bootstrap", "20",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    table = pd.read_csv(out / "comparison.csv")
    np.testing.assert_allclose(table["similarity"], compare(layers, brain, "corr").mean(1),
                               rtol=1e-6)  # fmt: skip
    assert (out / "similarity.png").stat().st_size > 0 and (out / "heatmap.png").is_file()


def test_checkpoint_and_image_folder(tmp_path):
    _, brain_path = _brain(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(2)
    for i in range(N):
        matplotlib.image.imsave(images / f"s{i}.png", rng.random((6, 6, 3)))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(108, 12), nn.ReLU(), nn.Linear(12, 4))
    torch.save(net, tmp_path / "model.pt")
    out = tmp_path / "out"
    rc = main(["compare", "--checkpoint", str(tmp_path / "model.pt"), "--stimuli", str(images),
               "--layer-names", "2", "3", "--brain", f"IT={brain_path}",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["layer"].astype(str)) == ["2", "3"]
    assert table["best"].sum() == 1


def test_bad_arguments_return_2(tmp_path, capsys):
    _, brain_path = _brain(tmp_path)
    assert main(["compare", "--brain", f"IT={brain_path}"]) == 2
    assert "--layers" in capsys.readouterr().out
    assert main(["compare", "--layers", "x.pkl", "--brain", "nofile"]) == 2
    assert "REGION=FILE" in capsys.readouterr().out


def test_checkpoint_loads_weights_only_first(tmp_path, monkeypatch, capsys):
    from brainrdl.cli.compare import load_model

    (tmp_path / "factory_mod.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Linear(2, 3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    net = nn.Linear(2, 3)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    # a state dict: read safely, no pickled code run, no warning
    torch.save(net.state_dict(), tmp_path / "state.pt")
    model = load_model(str(tmp_path / "state.pt"), "factory_mod:build")
    assert calls == [True]
    torch.testing.assert_close(model.weight, net.weight)
    assert "warning" not in capsys.readouterr().err
    # a pickled module: the safe read fails, the fallback warns that the file is trusted code
    calls.clear()
    torch.save(net, tmp_path / "module.pt")
    model = load_model(str(tmp_path / "module.pt"))
    assert calls == [True, False]
    torch.testing.assert_close(model.weight, net.weight)
    assert "runs the code pickled in it" in capsys.readouterr().err
