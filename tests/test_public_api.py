"""The names outside checks rely on (DESIGN.md, "Public API") exist and resolve."""

from __future__ import annotations

import subprocess
import sys

import pytest

import brainrdl

DESIGN_NAMES = [
    "calc_rdm",
    "compare",
    "BrainTeacher",
    "NetworkTeacher",
    "RDLLoss",
    "PKTLoss",
    "KnowledgeProjection",
    "compare_layers",
    "fit",
]


def test_all_matches_lazy_map():
    assert set(brainrdl.__all__) - {"__version__"} == set(brainrdl._LAZY)


@pytest.mark.parametrize("name", sorted(brainrdl._LAZY))
def test_every_public_name_resolves(name):
    value = getattr(brainrdl, name)
    assert callable(value), f"brainrdl.{name} should be a function or class, got {type(value)}"


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_design_names_are_public(name):
    assert name in brainrdl.__all__


def test_functions_survive_submodule_imports():
    # Importing every submodule must not replace a public function by a module of the same name.
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(brainrdl.__path__):
        importlib.import_module(f"brainrdl.{info.name}")
    for name in brainrdl._LAZY:
        assert callable(getattr(brainrdl, name)), name
    assert callable(brainrdl.noise_ceiling)


def test_unknown_attribute_error_names_it():
    with pytest.raises(AttributeError, match="no_such_thing"):
        brainrdl.no_such_thing  # noqa: B018


def test_adapters_import():
    from data_adapters import demo, ephys, fmri
    from data_adapters.ephys import nwb

    assert callable(fmri.rdms_from_betas)
    assert callable(ephys.rdms_from_spikes)
    assert callable(nwb.rdms_from_nwb)
    assert callable(demo.make_demo_study)


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "brainrdl.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("demo", "compare", "make-demo-data"):
        assert command in out
