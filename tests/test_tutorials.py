"""Execute every tutorial notebook top to bottom with its default settings; any cell error fails.

The notebooks run in ``tutorials/`` (their own folder) on the embedded demo data. When the real
data folder ``../shared/data`` exists beside the project it is passed on through
``$BRAINRDL_SHARED_DATA`` (the real-data tutorial then runs in full; without it that tutorial
explains where the files come from and stops cleanly, which is tested too).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT_S = 300

pytestmark = [pytest.mark.slow, pytest.mark.notebook]


def _shared_data() -> Path | None:
    env = os.environ.get("BRAINRDL_SHARED_DATA")
    candidate = Path(env) if env else ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def _execute(path: Path, env: dict[str, str]) -> None:
    if any(importlib.util.find_spec(m) is None for m in ("nbclient", "ipykernel")):
        pytest.skip("nbclient and ipykernel are needed to run notebooks: pip install -e '.[test]'")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(TUTORIALS)}},
        allow_errors=False,
    )
    old = dict(os.environ)
    os.environ.update(env)
    # the kernel is this interpreter (jupyter_client maps "python" to sys.executable); make sure
    # anything the notebook starts with a bare "python" finds the same environment
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + old.get("PATH", "")
    try:
        client.execute()
    except CellExecutionError as err:  # the message holds the cell source and the traceback
        pytest.fail(f"{path.name}: a cell raised\n{err}", pytrace=False)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_tutorials_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) >= 6, f"expected the six tutorials in {TUTORIALS}, found {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    # one thread per kernel: CI runs two test workers on two cores
    env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "OMP_NUM_THREADS": "1"}
    shared = _shared_data()
    if shared is not None:
        env["BRAINRDL_SHARED_DATA"] = str(shared)
    _execute(path, env)


@pytest.mark.parametrize(
    "path",
    [p for p in NOTEBOOKS if "real_data" in p.stem],
    ids=lambda p: p.stem,
)
def test_real_data_notebook_without_data_stops_cleanly(path, tmp_path):
    """Pointed at an empty folder, the real-data tutorial explains and runs without error."""
    _execute(path, {"BRAINRDL_SHARED_DATA": str(tmp_path)})
