"""The import graph: rooms depend one way, with no cycles and no private names across rooms.

The layout (docs/architecture.md): ``data_adapters`` → brainrdl core (``rsa``, ``stats``) ←
``nets`` / ``train`` / ``analysis`` ← ``cli``. The core never imports ``data_adapters``; only the
CLI, at the top, uses both. Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("brainrdl", "data_adapters")

# room -> rooms it may import (besides itself). "validation" and "errors" are the shared vocabulary.
_BASE = {"brainrdl", "brainrdl.validation", "brainrdl.errors"}
ALLOWED: dict[str, set[str]] = {
    "brainrdl.rsa": _BASE,
    "brainrdl.stats": _BASE | {"brainrdl.rsa"},
    "brainrdl.nets": _BASE | {"brainrdl.rsa"},
    "brainrdl.datasets": _BASE | {"brainrdl.rsa"},
    "brainrdl.train": _BASE | {"brainrdl.rsa", "brainrdl.stats", "brainrdl.nets"},
    "brainrdl.analysis": _BASE
    | {"brainrdl.rsa", "brainrdl.stats", "brainrdl.nets", "brainrdl.datasets"},
    "brainrdl.runs": _BASE
    | {"brainrdl.rsa", "brainrdl.stats", "brainrdl.nets", "brainrdl.train", "brainrdl.analysis",
       "brainrdl.datasets"},
    "data_adapters.fmri": _BASE | {"brainrdl.rsa", "brainrdl.stats"},
    "data_adapters.ephys": _BASE | {"brainrdl.rsa", "brainrdl.stats"},
    "data_adapters.demo": _BASE | {"brainrdl.rsa", "brainrdl.stats", "data_adapters.ephys"},
    "data_adapters.bids": _BASE | {"brainrdl.rsa", "brainrdl.stats", "data_adapters.fmri"},
    "data_adapters.meeg": _BASE | {"brainrdl.rsa", "brainrdl.stats", "data_adapters.fmri"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module a dotted import name refers to (a module, or the module holding it)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> list[tuple[str, str]]:
    """(imported project module, imported name or '') for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    is_package = MODULES[module].name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    found.append((target, ""))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    found.append((full, ""))
                elif (target := _resolve(base)) is not None:
                    found.append((target, alias.name))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m) if t != m} for m in MODULES}


def test_no_import_cycles():
    graph = _graph()
    # Tarjan-free check: depth-first search with colours, report one cycle
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package __init__ importing its own submodules is a re-export, not a cycle
            if nxt.startswith(node + "."):
                continue
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if colour.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour.get(node) is None:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_never_imports_data_adapters():
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in _graph().items()
        if m.startswith("brainrdl") and not m.startswith("brainrdl.cli")
        for t in targets
        if t.startswith("data_adapters")
    )
    assert not offenders, offenders


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_rooms_import_only_downwards(room):
    allowed = ALLOWED[room] | {room}
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in _graph().items()
        if _room(m) == room
        for t in targets
        if _room(t) not in allowed and t not in allowed
    )
    assert not offenders, offenders


def test_no_private_names_across_rooms():
    offenders = []
    for module in MODULES:
        for target, name in _imports(module):
            if _room(target) == _room(module):
                continue
            private_module = any(p.startswith("_") and not p.startswith("__")
                                 for p in target.split("."))
            private_name = name.startswith("_") and not name.startswith("__")
            if private_module or private_name:
                offenders.append(f"{module} imports {target}{'.' + name if name else ''}")
    assert not offenders, sorted(offenders)


def test_the_checker_sees_a_planted_cycle(monkeypatch):
    """The graph reader finds lazy (in-function) imports: a check that cannot fail is no check."""
    graph = _graph()
    assert "brainrdl.train.losses" in graph["brainrdl.train.loop"]  # imported inside a method
    assert any(t.startswith("brainrdl.rsa") for t in graph["brainrdl.train.monitor"])
    assert _resolve("brainrdl.rsa.rdm.calc_rdm") == "brainrdl.rsa.rdm"
