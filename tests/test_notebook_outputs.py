"""The committed tutorial outputs show no warnings and no paths of the machine that built them.

Fast (reads the .ipynb files, executes nothing): a rebuilt notebook that picked up a
``TqdmWarning``, a ``FutureWarning`` or an absolute path fails here before review.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# a Python warning class as printed by the warnings module, and absolute machine paths
_WARNING = re.compile(r"\b\w*Warning\b:")
_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|private|var/folders)/")


def _texts(nb: dict):
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if "text" in out:
                yield i, "".join(out["text"])
            for kind in ("text/plain", "text/html"):
                if kind in out.get("data", {}):
                    yield i, "".join(out["data"][kind])
            if out.get("output_type") == "error":
                yield i, f"{out.get('ename')}: {out.get('evalue')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_outputs_free_of_warnings_and_machine_paths(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for i, text in _texts(nb):
        for pattern, what in ((_WARNING, "warning"), (_PATH, "machine path")):
            match = pattern.search(text)
            if match:
                start = max(0, match.start() - 60)
                problems.append(f"cell {i}: {what}: ...{text[start:match.end() + 60]!r}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
