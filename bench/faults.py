"""Faults without loss: each fault scenario of ``tests/faults`` once, its counts and recovery.

Every scenario runs the real processes (simulated gateway, ``runbridge``,
``runweb``) on real PostgreSQL, SQLite and Redis servers on loopback, injects
its fault, and counts against the gateway's own sequence numbers: events
lost, events stored twice, action attempts without an outcome, locks the
store shows that the gateway does not hold. ``recovery_s`` is, per scenario,
the seconds from the fault's end to the first events (or answer) past it.
There is no baseline: the figures are counts that should be 0 and times.

Prints one line ``{"metric": "faults", ...}``; ``python -m bench.faults NAME ...``
runs only the named scenarios. A scenario that fails is counted in ``failed``
with its message (and its counts left out of the sums).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import django

from tests.faults.harness import Counts
from tests.faults.scenarios import SCENARIOS, Servers, describe

COUNTS = tuple(Counts().as_dict())  # the counts each scenario reports, summed here


def run(servers: Servers, names: list[str]) -> dict[str, Any]:
    """Each scenario once; the sums of their counts, recovery seconds, banners, failures."""
    totals = dict.fromkeys(COUNTS, 0)
    recovery: dict[str, float] = {}
    banners: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            result = SCENARIOS[name](servers)
        except Exception as exc:  # one failed scenario must not hide the others
            traceback.print_exc(file=sys.stderr)
            failed[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        print(describe(result), file=sys.stderr)
        for key, value in result.counts.as_dict().items():
            totals[key] += value
        recovery[name] = round(result.recovery_s, 2)
        banners[name] = result.banner
    return {
        "metric": "faults",
        "scenarios": len(recovery),
        **totals,
        "recovery_s": recovery,
        "failed": failed,
        "banners": banners,
    }


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    # Settings only (the deadlines an interrupted action is judged by); no database here.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runboard.settings")
    django.setup()
    folder = Path(tempfile.mkdtemp(prefix="runboard-faults-"))
    servers = Servers(folder)
    try:
        servers.start()
        line = run(servers, names or list(SCENARIOS))
    finally:
        servers.stop()
    print(json.dumps(line))
    if line["failed"] or any(line[count] for count in COUNTS):
        print(f"a scenario failed or counted a loss; its logs are in {folder}", file=sys.stderr)
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
