"""MkDocs hook: list the pages that scripts write only when their files exist.

The benchmark scripts write ``docs/benchmarks-*.md`` and ``docs/replication.md``; a checkout where
they have not been run yet must still build in strict mode. This hook

- drops nav entries for the optional pages (:data:`OPTIONAL`) whose file is absent (INFO line);
- turns the ``Benchmarks`` nav entry into a section holding ``benchmarks.md`` and every
  ``benchmarks-*.md`` present (titled by the first Markdown heading);
- replaces the ``<!-- benchmark-tables -->`` marker in ``benchmarks.md`` by links to those pages.

Pages that are hand-written (everything else in the nav) stay mandatory: a missing one fails the
strict build as it should.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.optional_pages")

OPTIONAL = {"losses.md", "replication.md"}
MARKER = "<!-- benchmark-tables -->"
_docs_dir: Path | None = None


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#\s+(.+)", line)
        if match:
            return match.group(1).strip()
    return path.stem.replace("benchmarks-", "").replace("-", " ").capitalize()


def _benchmark_pages(docs_dir: Path) -> list[Path]:
    return sorted(docs_dir.glob("benchmarks-*.md"))


def _filter(nav: list, docs_dir: Path) -> list:
    kept = []
    for item in nav:
        if isinstance(item, str):
            if item in OPTIONAL and not (docs_dir / item).is_file():
                log.info("optional page %s is absent; left out of the nav", item)
                continue
            kept.append(item)
            continue
        (title, value), *_ = item.items()
        if isinstance(value, list):
            kept.append({title: _filter(value, docs_dir)})
        elif value in OPTIONAL and not (docs_dir / value).is_file():
            log.info("optional page %s is absent; left out of the nav", value)
        elif value == "benchmarks.md":
            pages = _benchmark_pages(docs_dir)
            if pages:
                section = ["benchmarks.md"] + [{_title(p): p.name} for p in pages]
                kept.append({title: section})
            else:
                kept.append(item)
        else:
            kept.append(item)
    return kept


def on_config(config):
    global _docs_dir
    _docs_dir = Path(config["docs_dir"])
    if config.get("nav"):
        config["nav"] = _filter(config["nav"], _docs_dir)
    return config


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown or _docs_dir is None:
        return markdown
    pages = _benchmark_pages(_docs_dir)
    lines = [f"- [{_title(p)}]({p.name})" for p in pages]
    if (_docs_dir / "replication.md").is_file():
        lines.append("- [Paper replication: distillation on digits](replication.md)")
    if not lines:
        lines = [
            '!!! note "No tables yet"',
            "    The benchmark scripts have not been run in this checkout. Run the scripts under",
            "    `benchmarks/` (see below); each writes its table as `docs/benchmarks-*.md`,",
            "    and this page lists it on the next build.",
        ]
    return markdown.replace(MARKER, "\n".join(lines))
