"""Mutation testing of the numeric core with mutmut: run (resumable), score per module, write docs.

Usage (from the project root, with the environment active)::

    python scripts/mutation.py run              # mutate every core module (resumes a previous run)
    python scripts/mutation.py run rdm stats    # only these groups (each group's state is its own)
    python scripts/mutation.py report           # score table -> docs/mutation-testing.md

Not part of CI: a full run takes tens of minutes on two cores (see docs/mutation-testing.md for the
measured time). mutmut keeps its results in ``mutants/`` and re-tests only mutants whose function
changed, so a second run after a small edit is quick. Mutants that no test can kill because they
change nothing observable are listed, with the reason, in
``tests/mutation_equivalents/<group>.toml``; the score is killed / (all − equivalent).
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents"  # one <group>.toml per group
DOCS = ROOT / "docs" / "mutation-testing.md"

# group -> (modules to mutate, the fast tests that cover them). Groups are small enough that one
# group runs in minutes; each keeps its own state (run them in separate clones to run them at once).
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "rdm": (
        ["brainrdl/rsa/distances.py", "brainrdl/rsa/rdm.py", "brainrdl/rsa/crossnobis.py"],
        ["tests/test_distances.py", "tests/test_rdm.py", "tests/test_properties_rsa.py",
         "tests/test_properties_rdm.py"],
    ),
    "compare": (
        ["brainrdl/rsa/comparison.py", "brainrdl/rsa/ranks.py"],
        ["tests/test_comparison.py", "tests/test_ranks_threads.py", "tests/test_ranks_cpu.py",
         "tests/test_properties_rsa.py", "tests/test_properties_compare.py"],
    ),
    "stats": (
        ["brainrdl/stats/bootstrap.py", "brainrdl/stats/ceilings.py"],
        ["tests/test_bootstrap.py", "tests/test_noise_ceiling.py",
         "tests/test_properties_stats.py"],
    ),
    "metrics": (
        ["brainrdl/stats/cka.py", "brainrdl/stats/encoding.py", "brainrdl/stats/procrustes.py"],
        ["tests/test_cka.py", "tests/test_encoding.py", "tests/test_procrustes.py",
         "tests/test_properties_metrics.py"],
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


def _mutmut_config(groups: list[str], timeout_multiplier: float = 20.0) -> str:
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
        f"timeout_multiplier = {timeout_multiplier}\n"
        # workers fork from a server that has imported but run nothing: forked straight from the
        # process that ran the tests, torch's OpenMP pool (started by the tests that set two
        # threads) hangs in the child, and every mutant reaching such a test "times out"
        'process_isolation = "forkserver"\n'
        "mutate_only_covered_lines = true\n"
        # the text of error messages and warnings: their key words are asserted by the fuzz and
        # property tests; mutating every word of every message only adds noise to the score
        'do_not_mutate_patterns = ["^\\\\s*raise \\\\w+\\\\(", "warnings\\\\.warn\\\\("]\n'
    )


def _with_config(groups: list[str], timeout_multiplier: float = 20.0) -> str:
    """pyproject.toml text with its [tool.mutmut] table replaced for these groups."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text = re.sub(r"\n\[tool\.mutmut\].*?(?=\n\[|\Z)", "\n", text, flags=re.S).rstrip() + "\n"
    return text + "\n" + _mutmut_config(groups, timeout_multiplier)


def run(groups: list[str], max_children: int = 2, timeout_multiplier: float = 20.0,
        retest_survivors: bool = False, mutants: list[str] | None = None) -> int:
    """Run mutmut on the groups' modules, restricted to their fast tests (resumable).

    mutmut re-tests only the mutants of functions that changed; ``retest_survivors`` then also
    re-tests every recorded survivor of these groups (new tests may kill it). ``mutants``:
    re-test only these (mutmut keeps a survivor's verdict until its function changes, so
    survivors that a new test kills are re-run by name to record the kill).
    """
    pyproject = ROOT / "pyproject.toml"
    original = pyproject.read_text(encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    config = _mutmut_config(groups, timeout_multiplier)
    stamp = ROOT / "mutants" / "groups.txt"
    if stamp.exists() and stamp.read_text(encoding="utf-8") != config:
        # mutmut regenerates only files whose source changed: another module set needs a clean slate
        shutil.rmtree(ROOT / "mutants")
    try:
        pyproject.write_text(_with_config(groups, timeout_multiplier), encoding="utf-8")
        (ROOT / "mutants").mkdir(exist_ok=True)
        _forget_changed_modules(groups)
        stamp.write_text(config, encoding="utf-8")
        with open(ROOT / "mutants" / "run.log", "w") as log:  # mutmut's spinner: not for a terminal
            code = subprocess.call(["mutmut", "run", "--max-children", str(max_children),
                                    *(mutants or [])],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        survivors = [name for name, status in _results().items() if status == "survived"
                     and _group_of(_module_of(name)) in groups] if retest_survivors else []
        if code == 0 and survivors:
            print(f"re-testing {len(survivors)} survivors")
            with open(ROOT / "mutants" / "run.log", "a") as log:
                code = subprocess.call(
                    ["mutmut", "run", "--max-children", str(max_children), *survivors],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        pyproject.write_text(original, encoding="utf-8")
    print(f"mutmut finished in {time.perf_counter() - start:.0f} s (exit {code})")
    return code


def _forget_changed_modules(groups: list[str]) -> None:
    """Delete the mutated copy (and its results) of every module whose source changed.

    With ``mutate_only_covered_lines`` mutmut measures coverage on the files in ``mutants/``
    before regenerating the changed ones, i.e. on the *old mutated* copy, whose line numbers no
    longer match the source: most of the changed module's mutants would silently vanish (seen:
    460 -> 16). A missing file is copied fresh from the source first, so coverage is right.
    """
    sources = ROOT / "mutants" / "sources.json"
    old = json.loads(sources.read_text(encoding="utf-8")) if sources.exists() else {}
    new = {m: hashlib.sha256((ROOT / m).read_bytes()).hexdigest()
           for g in groups for m in GROUPS[g][0]}
    for module, digest in new.items():
        if old.get(module) not in (None, digest):
            for suffix in ("", ".meta", ".spans"):
                (ROOT / "mutants" / f"{module}{suffix}").unlink(missing_ok=True)
    sources.write_text(json.dumps(new, indent=1), encoding="utf-8")


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
    """Mutant name -> why it is equivalent (tests/mutation_equivalents/<group>.toml)."""
    found: dict[str, str] = {}
    for path in sorted(EQUIVALENTS.glob("*.toml")):
        found.update(tomllib.loads(path.read_text(encoding="utf-8")))
    return found


def _group_of(module: str) -> str | None:
    return next((g for g, (modules, _) in GROUPS.items() if module in modules), None)


def report(write: bool = True) -> int:
    """Print the score per module of the last run; write each group's table into the docs page.

    Returns 1 when any module is below 90 %. Each group has its own table in the page (between
    ``<!-- scores:<group> -->`` markers), so groups run in separate clones can each write theirs.
    """
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
    header = ["| module | mutants | killed | timed out | equivalent | surviving | not checked "
              "| score |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows: dict[str, list[str]] = defaultdict(list)
    worst = 100.0
    for module in sorted(counts):
        c = counts[module]
        total = sum(c.values())
        killed = c["killed"] + c["timeout"]
        unchecked = c["not checked"]
        live = total - c["equivalent"]
        score = 100.0 * killed / live if live else 100.0
        worst = min(worst, score)
        rows[_group_of(module) or "other"].append(
            f"| `{module}` | {total} | {c['killed']} | {c['timeout']} | {c['equivalent']} | "
            f"{live - killed - unchecked} | {unchecked} | {score:.1f} % |")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    for group, lines in sorted(rows.items()):
        table = "\n".join(header + lines)
        print(f"group {group}\n{table}\n")
        marker = f"<!-- scores:{group} -->"
        block = f"{marker}\n{table}\n\nReported {stamp}.\n<!-- /scores:{group} -->"
        if marker in text:
            text = re.sub(rf"{re.escape(marker)}.*?<!-- /scores:{group} -->",
                          lambda _, block=block: block, text, flags=re.S)
    for module, names in sorted(survivors.items()):
        print(f"\nsurviving or not checked in {module}: {len(names)}")
        for n in names[:50]:
            print("   ", n)
    if write and text:
        DOCS.write_text(text, encoding="utf-8")
    return 0 if worst >= 90.0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("groups", nargs="*", help=f"groups (default all): {sorted(GROUPS)}")
    parser.add_argument("--max-children", type=int, default=2, help="mutmut worker processes")
    parser.add_argument("--timeout-multiplier", type=float, default=20.0,
                        help="a mutant times out after this many times its tests' duration")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="also re-test the recorded survivors (after adding tests)")
    parser.add_argument("--mutants", type=Path, default=None,
                        help="file of mutant names (one a line) to re-test, e.g. survivors "
                             "after new tests were added")
    args = parser.parse_args(argv)
    groups = args.groups or sorted(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; known: {sorted(GROUPS)}")
    if args.command == "run":
        names = args.mutants.read_text(encoding="utf-8").split() if args.mutants else None
        code = run(groups, args.max_children, args.timeout_multiplier, args.retest_survivors,
                   names)
        return code or report()
    return report()


if __name__ == "__main__":
    sys.exit(main())
