"""Mutation testing of the numeric core with mutmut: run (resumable), score per module, write docs.

Usage (from the project root, with the environment active)::

    python scripts/mutation.py run              # mutate every core module (resumes a previous run)
    python scripts/mutation.py run rsa stats    # only these groups
    python scripts/mutation.py report           # score table -> docs/mutation-testing.md

Not part of CI: a full run takes tens of minutes on two cores (see docs/mutation-testing.md for the
measured time). mutmut keeps its results in ``mutants/`` and re-tests only mutants whose function
changed, so a second run after a small edit is quick. Mutants that no test can kill because they
change nothing observable are listed, with the reason, in ``tests/mutation_equivalents.toml``; the
score is killed / (all − equivalent).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.toml"
DOCS = ROOT / "docs" / "mutation-testing.md"

# group -> (modules to mutate, the fast tests that cover them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "rsa": (
        ["brainrdl/rsa/distances.py", "brainrdl/rsa/rdm.py", "brainrdl/rsa/crossnobis.py",
         "brainrdl/rsa/comparison.py", "brainrdl/rsa/ranks.py"],
        ["tests/test_distances.py", "tests/test_rdm.py", "tests/test_comparison.py",
         "tests/test_properties_rsa.py"],
    ),
    "stats": (
        ["brainrdl/stats/bootstrap.py", "brainrdl/stats/ceilings.py"],
        ["tests/test_bootstrap.py", "tests/test_noise_ceiling.py",
         "tests/test_properties_stats.py"],
    ),
    "train": (
        ["brainrdl/train/teachers.py", "brainrdl/train/functional.py"],
        ["tests/test_teachers.py", "tests/test_losses.py", "tests/test_properties_train.py"],
    ),
    "adapters": (
        ["data_adapters/fmri/rois.py", "data_adapters/ephys/spikes.py"],
        ["tests/test_fmri.py", "tests/test_ephys.py", "tests/test_properties_adapters.py"],
    ),
}


def _mutmut_config(groups: list[str]) -> str:
    modules = [m for g in groups for m in GROUPS[g][0]]
    tests = [t for g in groups for t in GROUPS[g][1] if (ROOT / t).exists()]
    q = ", ".join
    return (
        "[tool.mutmut]\n"
        'source_paths = ["brainrdl", "data_adapters"]\n'
        f"only_mutate = [{q(repr(m) for m in modules)}]\n".replace("'", '"')
        + f"pytest_add_cli_args_test_selection = [{q(repr(t) for t in tests)}]\n".replace("'", '"')
        + 'pytest_add_cli_args = ["-p", "no:xdist", "-p", "no:cacheprovider", "-q", "-x", '
        '"-m", "not slow and not notebook and not gpu"]\n'
        "timeout_multiplier = 5.0\n"
        "mutate_only_covered_lines = true\n"
        # the text of error messages and warnings: their key words are asserted by the fuzz and
        # property tests; mutating every word of every message only adds noise to the score
        'do_not_mutate_patterns = ["^\\\\s*raise \\\\w+\\\\(", "warnings\\\\.warn\\\\("]\n'
    )


def _with_config(groups: list[str]) -> str:
    """pyproject.toml text with its [tool.mutmut] table replaced for these groups."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text = re.sub(r"\n\[tool\.mutmut\].*?(?=\n\[|\Z)", "\n", text, flags=re.S).rstrip() + "\n"
    return text + "\n" + _mutmut_config(groups)


def run(groups: list[str]) -> int:
    """Run mutmut on the groups' modules, restricted to their fast tests (resumable)."""
    pyproject = ROOT / "pyproject.toml"
    original = pyproject.read_text(encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    config = _mutmut_config(groups)
    stamp = ROOT / "mutants" / "groups.txt"
    if stamp.exists() and stamp.read_text(encoding="utf-8") != config:
        # mutmut regenerates only files whose source changed: another module set needs a clean slate
        shutil.rmtree(ROOT / "mutants")
    try:
        pyproject.write_text(_with_config(groups), encoding="utf-8")
        (ROOT / "mutants").mkdir(exist_ok=True)
        stamp.write_text(config, encoding="utf-8")
        with open(ROOT / "mutants" / "run.log", "w") as log:  # mutmut's spinner: not for a terminal
            code = subprocess.call(["mutmut", "run", "--max-children", "2"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    finally:
        pyproject.write_text(original, encoding="utf-8")
    print(f"mutmut finished in {time.perf_counter() - start:.0f} s (exit {code})")
    return code


def _results() -> dict[str, str]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def _module_of(mutant: str) -> str:
    """'brainrdl.rsa.distances.x_f__mutmut_3' -> 'brainrdl/rsa/distances.py'."""
    dotted = mutant.split(".x")[0] if ".x" in mutant else mutant.rsplit(".", 1)[0]
    return dotted.replace(".", "/") + ".py"


def equivalents() -> dict[str, str]:
    """Mutant name -> why it is equivalent (tests/mutation_equivalents.toml)."""
    if not EQUIVALENTS.exists():
        return {}
    return {k: v for k, v in tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8")).items()}


def report(write: bool = True) -> int:
    """Print (and write into the docs) the score per module; exit 1 when any is below 90 %."""
    results, equiv = _results(), equivalents()
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in results.items():
        module = _module_of(name)
        if name in equiv:
            counts[module]["equivalent"] += 1
            continue
        counts[module][status] += 1
        if status not in ("killed", "timeout"):
            survivors[module].append(name)
    lines = ["| module | mutants | killed | equivalent | surviving | score |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    worst = 100.0
    for module in sorted(counts):
        c = counts[module]
        total = sum(c.values())
        killed = c["killed"] + c["timeout"]
        live = total - c["equivalent"]
        score = 100.0 * killed / live if live else 100.0
        worst = min(worst, score)
        lines.append(f"| `{module}` | {total} | {killed} | {c['equivalent']} | "
                     f"{live - killed} | {score:.1f} % |")
    table = "\n".join(lines)
    print(table)
    for module, names in sorted(survivors.items()):
        print(f"\nsurviving in {module}: {len(names)}")
        for n in names[:50]:
            print("   ", n)
    if write and DOCS.exists():
        text = DOCS.read_text(encoding="utf-8")
        text = re.sub(r"<!-- scores -->.*?<!-- /scores -->",
                      f"<!-- scores -->\n{table}\n<!-- /scores -->", text, flags=re.S)
        DOCS.write_text(text, encoding="utf-8")
    return 0 if worst >= 90.0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("groups", nargs="*", help=f"groups (default all): {sorted(GROUPS)}")
    args = parser.parse_args(argv)
    groups = args.groups or sorted(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; known: {sorted(GROUPS)}")
    if args.command == "run":
        code = run(groups)
        return code or report()
    return report()


if __name__ == "__main__":
    sys.exit(main())
