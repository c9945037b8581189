"""``brainrdl train``: config schema and errors, the run folder, resume, and 2 processes = 1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from brainrdl.cli._train_sources import SOURCES
from brainrdl.cli.main import main
from brainrdl.runs.runner import build_model, load_run, run_training
from brainrdl.train.config import (
    ConfigError,
    default_config_text,
    dumps_toml,
    parse_text,
    resolve,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]

# a tiny demo run: 20 brain stimuli (5 held out), 3 task steps per epoch
TINY = {
    "epochs": 1,
    "device": "cpu",
    "teacher": {"n_stimuli": 20},
    "heldout": {"n_stimuli": 5, "layers": ["conv1", "fc1"]},
    "training": {"brain_batch_size": 10, "max_steps_per_epoch": 3},
    "data": {"batch_size": 32},
    "log": {"progress": False},
}


def _tiny(**changes) -> dict:
    raw = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return resolve(raw)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The example config, a few steps, through the command line."""
    raw = tomllib.loads((ROOT / "examples" / "demo_config.toml").read_text())
    raw["epochs"] = 2
    raw["device"] = "cpu"
    raw["training"]["max_steps_per_epoch"] = 3
    raw.setdefault("log", {})["progress"] = False
    tmp = tmp_path_factory.mktemp("demo")
    config = tmp / "demo.toml"
    config.write_text(dumps_toml(resolve(raw)))
    assert main(["train", str(config), "--out", str(tmp / "run")]) == 0
    return tmp / "run"


# ----------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"alignment": {"fc1": {"target": "IT", "weight": "x"}}},
         '[alignment.fc1] weight: expected a number ≥ 0, got "x"'),
        ({"alignment": {"fc1": {"target": "IT", "weight": -1}}},
         "[alignment.fc1] weight: expected a number ≥ 0, got -1"),
        ({"epochs": 0}, "epochs: expected an integer ≥ 1, got 0"),
        ({"epochs": 1.5}, "epochs: expected an integer ≥ 1, got 1.5"),
        ({"data": {"batch_size": "64"}}, '[data] batch_size: expected an integer ≥ 1, got "64"'),
        ({"data": {"bach_size": 64}}, '[data] unknown key "bach_size"; did you mean "batch_size"?'),
        ({"optimiser": {"lr": 1}}, "unknown section [optimiser]; did you mean [optimizer]?"),
        ({"optimizer": {"name": "lbfgs"}},
         '[optimizer] name: expected one of "adam", "adamw", "sgd", got "lbfgs"'),
        ({"optimizer": {"lr": 0}}, "[optimizer] lr: expected a number > 0, got 0"),
        ({"log": {"tensorboard": "yes"}}, '[log] tensorboard: expected true or false, got "yes"'),
        ({"alignment": {"fc1": {"target": "IT", "loss": "mse"}}},
         '[alignment.fc1] loss: expected one of "rdl", "pkt", "cka", "kd", "kp", got "mse"'),
        ({"alignment": {"fc1": {"target": "IT", "options": {"comparisn": "paper"}}}},
         '[alignment.fc1.options] unknown option "comparisn" of loss "rdl"'),
        ({"alignment": {"fc1": {"weight": 1.0}}}, "[alignment.fc1] target: missing"),
        ({"alignment": {"layer3.1.conv2": {"target": "IT", "wieght": 1}}},
         '[alignment."layer3.1.conv2"] unknown key "wieght"'),
        ({"teacher": {"source": "hdf5"}}, '[teacher] rdms: needed for source = "hdf5"'),
        ({"teacher": {"source": "hdf5", "rdms": "r.hdf5", "stimuli": "s"}},
         '[alignment] missing: kind = "brain" needs at least one [alignment.<layer>] table'),
        ({"teacher": {"kind": "network", "spec": "demo:digit_teacher", "layers": ["fc1"]},
          "alignment": {"fc1": {"target": "fc2"}}},
         '[alignment.fc1] target: "fc2" is not among [teacher] layers'),
        ({"model": {"spec": "module:mylab"}}, '[model] spec: expected "module:package.module:'),
        ({"model": {"spec": "demo:alexnet"}}, '[model] spec: unknown demo model "alexnet"'),
        ({"data": {"source": "image_folder"}}, '[data] root: needed for source = "image_folder"'),
        ({"precision": "fp8"}, 'precision: expected one of "32", "bf16", "fp16"'),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        validate(raw, check_paths=False)
    assert any(e.startswith(message) for e in info.value.errors), info.value.errors


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate({"epochs": -1, "data": {"batch_size": 0}, "seed": "a"}, check_paths=False)
    assert len(info.value.errors) == 3
    assert str(info.value).startswith("3 problems in the config:")


def test_missing_path_is_named(tmp_path):
    raw = {"teacher": {"source": "hdf5", "rdms": "nope.hdf5", "stimuli": "stim"}}
    with pytest.raises(ConfigError) as info:
        validate(raw, base_dir=tmp_path)
    missing = str(tmp_path / "nope.hdf5")
    assert f"[teacher] rdms: no file or folder at {missing!r}" in str(info.value)
    assert "[teacher] stimuli: no file or folder" in str(info.value)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "rdms.hdf5").write_bytes(b"")
    (tmp_path / "stim").mkdir()
    cfg = validate({"teacher": {"source": "hdf5", "rdms": "rdms.hdf5", "stimuli": "stim"},
                    "alignment": {"fc1": {"target": "IT"}}}, base_dir=tmp_path)
    assert cfg["teacher"]["rdms"] == str((tmp_path / "rdms.hdf5").resolve())


def test_default_config_is_valid_and_round_trips():
    text = default_config_text()
    cfg = validate(parse_text(text))
    assert re.search(r"^epochs = \d+$", text, re.M)  # the key the docs tell users to edit
    assert cfg["data"]["source"] == cfg["teacher"]["source"] == "demo"
    assert validate(parse_text(dumps_toml(cfg)), check_paths=False) == cfg
    # every key the schema knows is printed (set or commented out with an example)
    for line in ("# weights = ", "# root = ", "# rdms = ", "batch_size = 64"):
        assert line in text


def test_yaml_config(tmp_path):
    pytest.importorskip("yaml")
    from brainrdl.train.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\nalignment:\n  fc1: {target: IT, weight: x}\n")
    with pytest.raises(ConfigError, match=r'\[alignment.fc1\] weight: expected a number ≥ 0, '
                       r'got "x"'):
        load_config(path)
    path.write_text("epochs: 2\noptimizer: {lr: 0.01}\n")
    assert load_config(path)["optimizer"]["lr"] == 0.01


def test_cli_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('epochs = 2\n[alignment.fc1]\ntarget = "IT"\nweight = "x"\n')
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert '[alignment.fc1] weight: expected a number ≥ 0, got "x"' in err
    assert not (tmp_path / "run").exists()  # nothing ran
    path.write_text("epochs = 2\n[model\n")
    assert main(["train", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "give a CONFIG file" in capsys.readouterr().err
    path.write_text("epochs = 2\n")
    assert main(["train", str(path), "--check"]) == 0
    assert "the config is valid" in capsys.readouterr().out


def test_module_spec_builds_the_labs_model(tmp_path, monkeypatch):
    (tmp_path / "labnets_runner_test.py").write_text(
        "from torch import nn\n"
        "def make(width=3):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, width))\n"
    )
    monkeypatch.chdir(tmp_path)
    model, transform, layers = build_model("module:labnets_runner_test:make", {"width": 5})
    assert model[1].out_features == 5 and transform is None and layers == []
    with pytest.raises(AttributeError, match="has no callable 'nope'"):
        build_model("module:labnets_runner_test:nope")


# ----------------------------------------------------------------------------- the run folder


def test_example_config_writes_the_run_folder(demo_run):
    for name in ("summary.json", "config.toml", "environment.json", "log.csv", "model.pt",
                 "learning_curves.png", "heldout_rsa.png", "layer_region.csv",
                 "checkpoints/last.pt", "brain_rdms/IT.hdf5", "heldout_stimuli.npz"):
        assert (demo_run / name).is_file(), name
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["epochs_logged"] == 2 and summary["world_size"] == 1
    assert -1 <= summary["final"]["heldout_rsa/fc1"] <= 1
    rows = {(r["layer"], r["region"]) for r in summary["layer_region"]}
    assert rows == {(layer, region) for layer in ("conv1", "conv2", "fc1", "fc2")
                    for region in ("EVC", "IT")}
    env = json.loads((demo_run / "environment.json").read_text())
    assert env["versions"]["torch"] == torch.__version__ and env["device"] == "cpu"
    saved = validate(parse_text((demo_run / "config.toml").read_text()), check_paths=False)
    assert saved["epochs"] == 2 and saved["alignment"]["fc1"]["target"] == "IT"


def test_load_run_gives_what_compare_needs(demo_run):
    import pandas as pd

    import brainrdl

    run = load_run(demo_run)
    assert run.layers == ["conv1", "conv2", "fc1", "fc2"]
    assert sorted(run.brain_rdms) == ["EVC", "IT"]
    assert run.stimuli.shape == (40, 1, 8, 8) and len(run.stimulus_ids) == 40
    # the weights are the trained ones, and the table recomputes from what load_run returns
    saved = torch.load(demo_run / "model.pt", weights_only=True)
    torch.testing.assert_close(run.model.state_dict()["fc2.weight"], saved["fc2.weight"])
    table = brainrdl.compare_layers(
        run.model, run.brain_rdms, stimuli=run.stimuli, layer_names=run.layers,
        stimulus_ids=run.stimulus_ids, method="corr",
        extract_kwargs={"method": "euclidean", "dtype": torch.float64, "progress": False},
    )
    written = pd.read_csv(demo_run / "layer_region.csv")
    np.testing.assert_allclose(table["similarity"], written["similarity"], rtol=1e-6)


def test_compare_reads_the_run_folder(demo_run, tmp_path):
    """``brainrdl compare --run DIR`` recomputes the run's own layer × region table."""
    import pandas as pd

    assert main(["compare", "--run", str(demo_run), "--method", "corr", "--n-bootstrap", "0",
                 "--no-progress", "--out", str(tmp_path / "cmp")]) == 0
    got = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    written = pd.read_csv(demo_run / "layer_region.csv")
    key = ["layer", "region"]
    merged = got.merge(written, on=key, suffixes=("", "_run"))
    assert len(merged) == len(written) == 8
    np.testing.assert_allclose(merged["similarity"], merged["similarity_run"], rtol=1e-6)


def test_existing_run_is_not_overwritten(demo_run, capsys):
    config = demo_run.parent / "demo.toml"
    assert main(["train", str(config), "--out", str(demo_run)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_resume_refuses_a_changed_config(demo_run):
    cfg = validate(parse_text((demo_run / "config.toml").read_text()), check_paths=False)
    cfg["optimizer"]["lr"] = 0.5
    with pytest.raises(ConfigError, match=r"\[optimizer\] lr: differs from the run"):
        run_training(cfg, demo_run, resume=True, sources=SOURCES)


@pytest.mark.slow
def test_print_config_trains_as_printed(tmp_path, capsys):
    assert main(["train", "--print-config"]) == 0
    text = capsys.readouterr().out
    # as a user would: shorten the run by editing the top-level epochs key only
    text = re.sub(r"^epochs = \d+$", "epochs = 1", text, count=1, flags=re.M)
    (tmp_path / "default.toml").write_text(text)
    assert main(["train", str(tmp_path / "default.toml"), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_logged"] == 1 and (tmp_path / "run" / "config.toml").is_file()


def test_resume_continues_bit_identically(tmp_path):
    cfg = _tiny(epochs=2, schedule={"name": "cosine", "warmup_steps": 2})
    run_training(cfg, tmp_path / "whole", sources=SOURCES)
    # the same config, killed right after the epoch-0 checkpoint, then resumed
    killed = tmp_path / "killed"
    _run_partial(cfg, killed)
    from brainrdl.train.checkpoint import load_checkpoint

    saved_row = load_checkpoint(killed / "checkpoints" / "last.pt")["log"][0]
    run_training(cfg, killed, resume=True, sources=SOURCES)
    # epoch 0 was not trained again: its log row (with its wall time) comes from the checkpoint
    import pandas as pd

    assert pd.read_csv(killed / "log.csv")["seconds"][0] == pytest.approx(saved_row["seconds"])
    a, b = _weights(tmp_path / "whole"), _weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = pd.read_csv(tmp_path / "whole" / "log.csv").drop(columns="seconds")
    log_b = pd.read_csv(killed / "log.csv").drop(columns="seconds")
    assert len(log_b) == 2
    # same losses and held-out RSA per epoch (only the wall time differs)
    pd.testing.assert_frame_equal(log_a, log_b)


class _Killed(Exception):
    pass


def _run_partial(cfg, out):
    """Run ``cfg`` but stop right after the first checkpoint is written (a killed job)."""
    import brainrdl.train.loop as loop

    original = loop.save_checkpoint

    def save_then_die(state, path):
        original(state, path)
        raise _Killed

    loop.save_checkpoint = save_then_die
    try:
        with pytest.raises(_Killed):
            run_training(cfg, out, sources=SOURCES)
    finally:
        loop.save_checkpoint = original
    assert (out / "checkpoints" / "last.pt").is_file() and not (out / "summary.json").exists()


def test_network_teacher_and_hdf5_brain(demo_run, tmp_path):
    # a network teacher (random demo teacher net) toward fc1
    cfg = _tiny(teacher={"kind": "network", "spec": "demo:digit_teacher", "layers": ["fc1"]},
                alignment={"fc1": {"target": "fc1", "loss": "rdl", "weight": 1.0,
                                   "options": {}}})
    summary = run_training(cfg, tmp_path / "net", sources=SOURCES)
    assert {r["region"] for r in summary["layer_region"]} == {"fc1"}
    # brain RDMs from an rsatoolbox HDF5 file + stimuli in an .npz (the demo run's held-out set)
    cfg = _tiny(teacher={"source": "hdf5", "rdms": str(demo_run / "brain_rdms" / "IT.hdf5"),
                         "stimuli": str(demo_run / "heldout_stimuli.npz")},
                heldout={"n_stimuli": 10}, training={"brain_batch_size": 8},
                alignment={"fc1": {"target": "IT", "options": {"comparison": "pearson"}}})
    summary = run_training(cfg, tmp_path / "h5", sources=SOURCES)
    assert summary["n_heldout_stimuli"] == 10
    assert {r["region"] for r in summary["layer_region"]} == {"IT"}


def test_cosine_schedule_sets_the_learning_rate():
    from brainrdl.train.sharding import LRSchedule

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    cfg = resolve({"schedule": {"name": "cosine", "warmup_steps": 2, "min_lr": 0.1}})["schedule"]
    LRSchedule(opt, cfg, steps_per_epoch=5, total_steps=10, start_step=0)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(9):
        p.grad = torch.zeros(1)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    expected = [min(1, (s + 1) / 2) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / 10)))
                for s in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


# ----------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    """torchrun --nproc_per_node=2 on CPU (gloo) ends with the single-process weights."""
    cfg = _tiny(epochs=2)
    path = tmp_path / "tiny.toml"
    path.write_text(dumps_toml(cfg))
    run_training(cfg, tmp_path / "one", sources=SOURCES)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "brainrdl.cli.main", "train", str(path), "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2
    # the alignment term is the loss of the global brain batch: the same number on 1 and 2
    # processes (a brain batch duplicated on each rank instead of split would change it)
    import pandas as pd

    log1 = pd.read_csv(tmp_path / "one" / "log.csv")
    log2 = pd.read_csv(tmp_path / "two" / "log.csv")
    for column in ("align/fc1", "heldout_rsa/fc1", "val_loss"):
        np.testing.assert_allclose(log2[column], log1[column], rtol=1e-5, err_msg=column)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
    # and the weights moved: the comparison is not between two untouched initialisations
    torch.manual_seed(0)
    init = build_model("demo:digitcnn")[0].state_dict()
    assert not torch.allclose(init["fc1.1.weight"], one["fc1.1.weight"])


def test_config_problems_found_by_building_fail_before_anything_runs(tmp_path):
    bad_options = _tiny(alignment={"fc1": {"target": "IT", "loss": "rdl", "weight": 1.0,
                                           "options": {"comparison": "nope"}}})
    with pytest.raises(ConfigError, match=r"\[alignment.fc1.options\] .*comparison"):
        run_training(bad_options, tmp_path / "a", sources=SOURCES)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match=r'\[teacher\] source: "betas" is not available'):
        betas = {"source": "betas", "betas": "b.nii", "design": "d.tsv", "atlas": "a.nii",
                 "stimuli": "s"}
        run_training(_tiny(teacher=betas, alignment={"fc1": {"target": "IT"}}), tmp_path / "c",
                     sources={"data:demo": SOURCES["data:demo"]})


def test_image_folder_and_torchvision_task_data(tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "labnet_runner_rgb.py").write_text(
        "from torch import nn\n"
        "def make(n_classes=2):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(),\n"
        "                         nn.Linear(16, n_classes))\n"
    )
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "task" / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "task" / label / f"{i}.png")
    common = {"epochs": 2, "device": "cpu", "teacher": {"kind": "none"}, "log": {"progress": False},
              "model": {"spec": "module:labnet_runner_rgb:make"}}
    cfg = validate({**common, "data": {"source": "image_folder", "root": "task", "image_size": 8,
                                       "batch_size": 4, "val_fraction": 0.25}})
    summary = run_training(cfg, tmp_path / "folder")
    assert summary["epochs_logged"] == 2 and summary["layer_region"] is None
    assert 0 <= summary["final"]["val_accuracy"] <= 1
    # a torchvision data set (FakeData: generated, nothing on disk, nothing downloaded)
    cfg = validate({**common, "data": {"source": "torchvision", "root": ".", "dataset": "FakeData",
                                       "image_size": 8, "batch_size": 8, "val_fraction": 0.0},
                    "training": {"max_steps_per_epoch": 2},
                    "model": {"spec": "module:labnet_runner_rgb:make",
                              "options": {"n_classes": 10}}})
    summary = run_training(cfg, tmp_path / "tv")
    assert np.isfinite(summary["final"]["task_loss"]) and "val_loss" not in summary["final"]
    bad = validate({**common, "data": {"source": "torchvision", "root": ".", "dataset": "Nope"}})
    with pytest.raises(ConfigError, match='torchvision has no data set "Nope"'):
        run_training(bad, tmp_path / "bad")


def test_tensorboard_events_when_installed(demo_run):
    pytest.importorskip("tensorboard")
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["tensorboard"] is True
    assert any((demo_run / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.gpu
def test_cuda_run(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    summary = run_training(_tiny(device="cuda"), tmp_path / "gpu", sources=SOURCES)
    env = json.loads((tmp_path / "gpu" / "environment.json").read_text())
    assert env["device"].startswith("cuda") and summary["epochs_logged"] == 1
    assert np.isfinite(summary["final"]["heldout_rsa/fc1"])
