"""``brainrdl compare``: networks by spec over a stimulus folder, saved RDMs, and safe loading."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from rsatoolbox.rdm import RDMs, compare

from brainrdl.cli.main import build_parser, main
from brainrdl.nets.models import DigitCNN

N = 8
K = N * (N - 1) // 2
IDS = [f"s{i}" for i in range(N)]


def _brain(tmp_path, rois=("IT",)):
    rng = np.random.default_rng(0)
    n = 4 * len(rois)
    brain = RDMs(rng.random((n, K)),
                 rdm_descriptors={"subject": [1, 1, 2, 2] * len(rois),
                                  "roi": [r for r in rois for _ in range(4)]},
                 pattern_descriptors={"stimulus": IDS})  # fmt: skip
    path = tmp_path / "brain.hdf5"
    brain.save(str(path), file_type="hdf5")
    return brain, path


def _images(tmp_path, ids=IDS, size=8, grey=False):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in ids:
        img = rng.random((size, size)) if grey else rng.random((size, size, 3))
        matplotlib.image.imsave(folder / f"{i}.png", img, cmap="gray" if grey else None)
    return folder


def test_saved_layer_rdms_hdf5(tmp_path):
    brain, brain_path = _brain(tmp_path)
    layers = RDMs(np.random.default_rng(1).random((3, K)),
                  rdm_descriptors={"layer": ["a", "b", "c"]},
                  pattern_descriptors={"stimulus": IDS})  # fmt: skip
    layers.save(str(tmp_path / "layers.hdf5"), file_type="hdf5")
    out = tmp_path / "out"
    rc = main(["compare", "--layer-rdms", str(tmp_path / "layers.hdf5"), "--brain",
               str(brain_path), "--n-bootstrap", "20", "--out", str(out)])  # fmt: skip
    assert rc == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["region"].unique()) == ["IT"]  # from the 'roi' rdm descriptor
    np.testing.assert_allclose(table["similarity"], compare(layers, brain, "corr").mean(1),
                               rtol=1e-6)  # fmt: skip
    assert (table["ci_low"] <= table["ci_high"]).all()
    assert (out / "similarity.png").stat().st_size > 0 and (out / "heatmap.png").is_file()


def test_pickle_refused_unless_allowed(tmp_path, capsys, monkeypatch):
    import pickle

    _, brain_path = _brain(tmp_path)
    layers = RDMs(np.random.default_rng(1).random((2, K)), rdm_descriptors={"layer": ["a", "b"]},
                  pattern_descriptors={"stimulus": IDS})  # fmt: skip
    layers.save(str(tmp_path / "layers.pkl"), file_type="pkl")
    calls = []
    real_load = pickle.load
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(1) or real_load(*a, **k))
    args = ["compare", "--layer-rdms", str(tmp_path / "layers.pkl"), "--brain", str(brain_path),
            "--n-bootstrap", "0", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "layers.pkl" in err and "--allow-pickle" in err and calls == []
    assert main([*args, "--allow-pickle"]) == 0
    assert calls  # read only with the explicit flag
    assert main(["compare", "--layer-rdms", str(tmp_path / "layers.pkl"), "--brain",
                 f"IT={tmp_path / 'brain.pkl'}", "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "brain.pkl" in capsys.readouterr().err


@pytest.mark.slow
def test_torchvision_model_on_an_image_folder_end_to_end(tmp_path, capsys):
    _, brain_path = _brain(tmp_path, rois=("EVC", "IT"))
    images = _images(tmp_path)
    out = tmp_path / "out"
    rc = main(["compare", "--model", "torchvision:resnet18", "--stimuli", str(images),
               "--brain", str(brain_path), "--layers", "auto", "--n-bootstrap", "50",
               "--no-progress", "--out", str(out)])  # fmt: skip
    assert rc == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["layer"].unique()) == ["layer1", "layer2", "layer3", "layer4", "avgpool",
                                             "fc"]  # fmt: skip
    assert set(table["region"]) == {"EVC", "IT"}
    assert table.groupby("region")["best"].sum().tolist() == [1, 1]
    assert np.isfinite(table[["ci_low", "ci_high"]].to_numpy()).all()
    assert "best layer" in capsys.readouterr().out


def test_weights_file_and_several_models_one_table(tmp_path):
    _, brain_path = _brain(tmp_path)
    images = _images(tmp_path)
    (tmp_path / "labnets_cli.py").write_text(
        "from brainrdl.nets.models import DigitCNN\n\ndef make():\n    return DigitCNN(width=4, "
        "hidden=8)\n"
    )
    torch.manual_seed(5)
    trained = DigitCNN(width=4, hidden=8)
    torch.save(trained.state_dict(), tmp_path / "trained.pt")
    out = tmp_path / "out"
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)  # the module sits in the current folder, no PYTHONPATH
    try:
        rc = main(["compare", "--model", "module:labnets_cli:make", "--weights", "none",
                   "--model", "module:labnets_cli:make", "--weights", "trained.pt",
                   "--stimuli", str(images), "--brain", str(brain_path), "--n-bootstrap", "30",
                   "--no-progress", "--out", str(out)])  # fmt: skip
    finally:
        os.chdir(cwd)
    assert rc == 0
    table = pd.read_csv(out / "comparison.csv")
    names = list(table["model"].unique())
    assert names == ["module:labnets_cli:make [random]", "module:labnets_cli:make [trained.pt]",
                     "module:labnets_cli:make [trained.pt] - module:labnets_cli:make [random]"]
    assert (out / "models.png").stat().st_size > 0
    # the trained weights were used: its rows equal a direct comparison of that network
    import brainrdl
    from brainrdl.analysis.stimuli import StimulusSet

    stim = StimulusSet.from_folder(images).for_model(model=trained)
    direct = brainrdl.compare_layers(trained, {"IT": _brain_rdms(brain_path)}, stimuli=stim,
                                     layer_names="auto")  # fmt: skip
    mine = table[table["model"] == names[1]]
    np.testing.assert_allclose(mine["similarity"], direct["similarity"], rtol=1e-5)


def _brain_rdms(path):
    from rsatoolbox.rdm import load_rdm

    return load_rdm(str(path), file_type="hdf5")


def test_digit_cnn_checkpoint_on_rgb_images(tmp_path, monkeypatch):
    """The issue's failure: a 1-channel network given a folder of RGB images."""
    _, brain_path = _brain(tmp_path)
    images = _images(tmp_path)
    torch.save(DigitCNN().state_dict(), tmp_path / "digits.pt")
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or
                        real_load(*a, **k))  # fmt: skip
    rc = main(["compare", "--model-factory", "brainrdl.nets.models:DigitCNN", "--checkpoint",
               str(tmp_path / "digits.pt"), "--stimuli", str(images), "--brain",
               f"IT={brain_path}", "--n-bootstrap", "0", "--no-progress",
               "--out", str(tmp_path / "out")])  # fmt: skip
    assert rc == 0 and calls == [True]
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert list(table["layer"]) == ["conv1", "conv2", "fc1", "fc2"]


def test_checkpoint_never_unpickles_without_trust(tmp_path, monkeypatch, capsys):
    _, brain_path = _brain(tmp_path)
    images = _images(tmp_path)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 5))
    torch.save(net, tmp_path / "module.pt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(256))
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or
                        real_load(*a, **k))  # fmt: skip
    base = ["compare", "--stimuli", str(images), "--brain", f"IT={brain_path}", "--n-bootstrap",
            "0", "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    # a whole pickled model with no --model: refused before reading it
    assert main([*base, "--checkpoint", str(tmp_path / "module.pt")]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    # as weights of a --model: read weights-only, fails, no unsafe fallback
    for bad in ("module.pt", "random.pt"):
        assert main([*base, "--model-factory", "brainrdl.nets.models:DigitCNN", "--checkpoint",
                     str(tmp_path / bad)]) == 2  # fmt: skip
        assert bad in capsys.readouterr().err
    assert False not in calls
    # explicitly trusted: loaded (with a warning that it runs code), layers from the model
    assert main([*base, "--checkpoint", str(tmp_path / "module.pt"), "--trust-checkpoint",
                 "--image-size", "8"]) == 0  # fmt: skip
    assert "runs the code" in capsys.readouterr().err
    assert calls[-1] is False


def test_mismatched_ids_reported_as_a_table(tmp_path, capsys):
    _, brain_path = _brain(tmp_path)
    images = _images(tmp_path, ids=[*IDS[:6], "extra1", "extra2"])
    rc = main(["compare", "--model", "module:brainrdl.nets.models:DigitCNN", "--stimuli",
               str(images), "--brain", str(brain_path),
               "--out", str(tmp_path / "out")])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "no image | image, not in" in err
    assert "s6" in err and "extra1" in err and "stimulus_id and path" in err
    # a TSV maps the ids onto other file names
    rows = [f"{i}\timages/{f}.png" for i, f in zip(IDS, [*IDS[:6], "extra1", "extra2"])]
    (tmp_path / "stimuli.tsv").write_text("stimulus_id\tpath\n" + "\n".join(rows) + "\n")
    assert main(["compare", "--model", "module:brainrdl.nets.models:DigitCNN", "--stimuli",
                 str(tmp_path / "stimuli.tsv"), "--brain", str(brain_path), "--n-bootstrap", "0",
                 "--no-progress", "--out", str(tmp_path / "out")]) == 0  # fmt: skip


def test_bad_arguments_return_2(tmp_path, capsys):
    _, brain_path = _brain(tmp_path)
    assert main(["compare", "--brain", str(brain_path)]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["compare", "--layer-rdms", "x.hdf5", "--brain", "=nofile"]) == 2
    assert "REGION=FILE" in capsys.readouterr().err
    assert main(["compare", "--model", "torchvision:resnet18", "--brain", str(brain_path)]) == 2
    assert "--stimuli" in capsys.readouterr().err
    images = _images(tmp_path)
    assert main(["compare", "--model", "module:brainrdl.nets.models:DigitCNN", "--stimuli",
                 str(images), "--brain", str(brain_path), "--layers", "conv9",
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "conv9" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["compare", "--layer-rdms", "x.hdf5", "--brain", str(brain_path),
                 "--out", str(tmp_path / "afile")]) == 2  # fmt: skip
    assert "afile" in capsys.readouterr().err
    assert main(["compare", "--layer-rdms", "x.hdf5", "--brain", str(brain_path),
                 "--n-bootstrap", "-3"]) == 2  # fmt: skip
    assert "--n-bootstrap" in capsys.readouterr().err


def test_every_option_has_help():
    parser = build_parser()
    for name in ("compare", "rdms"):
        sub = parser._subparsers._group_actions[0].choices[name]
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"brainrdl {name} {action.option_strings} has no help"
    compare_help = parser._subparsers._group_actions[0].choices["compare"].format_help()
    assert "default 1000" in compare_help


@pytest.mark.parametrize("spec", ["timm:test_vit"])
def test_optional_backend_in_the_cli(tmp_path, spec):
    pytest.importorskip(spec.split(":")[0])
    _, brain_path = _brain(tmp_path)
    images = _images(tmp_path, grey=True)
    rc = main(["compare", "--model", spec, "--stimuli", str(images), "--brain", str(brain_path),
               "--n-bootstrap", "0", "--tokens", "mean", "--no-progress",
               "--out", str(tmp_path / "out")])  # fmt: skip
    assert rc == 0
    assert "blocks.0" in set(pd.read_csv(tmp_path / "out" / "comparison.csv")["layer"])
