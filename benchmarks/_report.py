"""Write one benchmark's section into docs/benchmarks-analysis.md (sections keyed by name)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-analysis.md"
HEADER = "# Analysis benchmarks\n\nWritten by the scripts in `benchmarks/`; do not edit by hand.\n"


def write_section(name: str, text: str) -> None:
    """Replace (or append) the section between the markers of ``name``."""
    doc = DOC.read_text() if DOC.exists() else HEADER
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(doc)
