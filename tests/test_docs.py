"""The documentation: the site builds in strict mode, every public module has an API page, and the
docstring examples run (doctest).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("brainrdl", "data_adapters")

# Doctests of these modules train networks or write data sets: run them only with the slow tests.
SLOW_DOCTEST_MODULES = {
    "brainrdl.cli.demo",
    "brainrdl.train.loop",
    "brainrdl.analysis.layer_comparison",
    "brainrdl.datasets.kriegeskorte2008",
    "data_adapters.demo.study",
    "data_adapters.demo.ephys",
    "data_adapters.fmri.betas",
    "data_adapters.fmri.glm",
    "data_adapters.ephys.nwb",
    "data_adapters.bids.fmriprep",
    "data_adapters.demo.bids",
}


def _walk(package: str, private: bool) -> list[str]:
    """Dotted names of the modules under ``package`` found on disk (not imported: a module that
    fails to import must still be listed); subpackages are walked, their ``__init__`` counts as the
    package. ``private`` selects names starting with one underscore instead of public ones."""
    names = []
    for info in pkgutil.iter_modules([str(ROOT / package.replace(".", "/"))]):
        dotted = f"{package}.{info.name}"
        is_private = info.name.startswith("_")
        if info.ispkg and not is_private:
            names.extend(_walk(dotted, private))
        if is_private == private and not info.name.startswith("__"):
            names.append(dotted)
    return names


def _public_modules() -> list[str]:
    """Public leaf modules of both packages (a subpackage is a room; its modules need pages)."""
    names = []
    for package in PACKAGES:
        for name in _walk(package, private=False):
            if not (ROOT / name.replace(".", "/")).is_dir():
                names.append(name)
    return sorted(names)


def _doctest_modules() -> list[str]:
    """Every module with examples: public modules, subpackage docstrings and private helpers."""
    names = set(PACKAGES)
    for package in PACKAGES:
        names.update(_walk(package, private=False))
        names.update(_walk(package, private=True))
    # a room (subpackage) counts only when its docstring carries an example
    return sorted(
        n for n in names
        if not (ROOT / n.replace(".", "/")).is_dir()
        or ">>>" in (ROOT / n.replace(".", "/") / "__init__.py").read_text(encoding="utf-8")
    )


def _documented_modules() -> set[str]:
    found = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        found.update(re.findall(r"^:::\s+([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    return found


def test_every_public_module_has_an_api_page():
    missing = sorted(set(_public_modules()) - _documented_modules())
    assert not missing, (
        f"modules without a '::: module' entry under docs/api/: {missing}; add them to an API page"
    )


def test_api_pages_name_existing_modules():
    unknown = sorted(
        name for name in _documented_modules() if importlib.util.find_spec(name) is None
    )
    assert not unknown, f"docs/api pages document modules that do not exist: {unknown}"


def test_nav_pages_exist():
    """Hand-written pages in the nav must exist (script-written ones are optional, see the hook)."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    pages = re.findall(r"([\w/.-]+\.md)\s*$", nav, re.M)
    assert pages, "no pages found in the nav of mkdocs.yml"
    optional = {"losses.md", "replication.md"}
    missing = [p for p in pages if p not in optional and not (ROOT / "docs" / p).is_file()]
    assert not missing, f"nav pages missing under docs/: {missing}"


@pytest.mark.slow
def test_site_builds_in_strict_mode(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' to build the site")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert (site / "index.html").is_file()
    assert (site / "api" / "rdm" / "index.html").is_file()
    # mkdocstrings rendered the reference (not just the headings of the page)
    assert "calc_rdm" in (site / "api" / "rdm" / "index.html").read_text(encoding="utf-8")


def _doctest_params():
    params = []
    for name in _doctest_modules():
        marks = [pytest.mark.slow] if name in SLOW_DOCTEST_MODULES else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("module_name", _doctest_params())
def test_docstring_examples(module_name, tmp_path, monkeypatch):
    """The examples in the docstrings run and print what they show."""
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, module_name) if t.examples]
    if not tests:
        pytest.skip(f"{module_name} has no docstring examples")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
