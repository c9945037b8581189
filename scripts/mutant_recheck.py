"""Re-check named mutants against chosen tests in one pytest process (a pytest plugin).

After a mutmut run, a new property test is meant to kill some survivors. Re-running mutmut
re-collects its test statistics and costs a run; this plugin instead loads the mutated sources
from ``mutants/`` once and runs the collected tests against each named mutant in turn (mutmut's
trampolines read the active mutant from ``MUTANT_UNDER_TEST`` at call time), stopping at the
first failure. A test failing, erroring or running past the time limit counts as a kill.

Usage (from the project root, after ``python scripts/mutation.py run``)::

    mutmut results --all true | grep survived | cut -d: -f1 > survivors.txt
    MUTANT_RECHECK_LIST=survivors.txt PYTHONPATH=mutants:scripts \
        pytest -p no:cacheprovider -p mutant_recheck tests/test_properties_stats.py

One line per mutant: ``name<TAB>KILLED <test id>`` or ``name<TAB>SURVIVED`` (to stdout, or to
the file ``MUTANT_RECHECK_OUT``). Hypothesis' example database is switched off so that one
mutant's failing example cannot leak into the next.
"""

from __future__ import annotations

import os
import signal
import time

from hypothesis import settings

settings.register_profile("mutant_recheck", database=None, deadline=None)
settings.load_profile("mutant_recheck")


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def pytest_runtestloop(session):
    from _pytest.runner import runtestprotocol

    with open(os.environ["MUTANT_RECHECK_LIST"], encoding="utf-8") as fh:
        names = [n.strip() for n in fh if n.strip()]
    out = open(os.environ.get("MUTANT_RECHECK_OUT", "/dev/stdout"), "a", encoding="utf-8")
    limit = int(os.environ.get("MUTANT_RECHECK_TIMEOUT", "60"))
    signal.signal(signal.SIGALRM, _alarm)
    for name in names:
        os.environ["MUTANT_UNDER_TEST"] = name
        killed, start = None, time.time()
        for item in session.items:
            signal.alarm(limit)
            try:
                if any(r.failed for r in runtestprotocol(item, nextitem=None, log=False)):
                    killed = item.nodeid
            except _Timeout:
                killed = "TIMEOUT " + item.nodeid
            finally:
                signal.alarm(0)
            if killed:
                break
        status = f"KILLED {killed}" if killed else "SURVIVED"
        print(f"{name}\t{status}\t{time.time() - start:.1f}s", file=out, flush=True)
    os.environ["MUTANT_UNDER_TEST"] = ""
    return True
