"""The README's code example runs as written and gives a sensible table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINRDL_CACHE", str(tmp_path))
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README.md lost its python example"
    namespace: dict = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    table = namespace["table"]
    assert set(table["layer"]) == {"conv2", "fc1"}
    assert set(table["region"]) == {"EVC", "IT"}
    assert table["similarity"].between(-1, 1).all()
    assert (table["ci_low"] <= table["similarity"]).all()
    assert (table["similarity"] <= table["ci_high"]).all()
    assert len(namespace["log"]) == 1  # one epoch logged
