"""`python -m bench [name ...]`: run the benchmarks, one JSON object per line on stdout.

Each benchmark runs in its own process (each sets Django up on its own
scratch database), one after the other so they do not compete for the two cores.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "ingest_bench",
    "flag_latency",
    "sessions_page",
    "event_to_dom",
    "viewer_queries",
    "retention_bench",
    "failover",
    "pg_ingest",
    "sessions_page_1m",
    "rss",
    "fanout",
    "faults",
)
# Names that run another benchmark's module with arguments.
PRESETS = {"sessions_page_1m": ("sessions_page", "--timeline-rows", "1000000")}


def main(names: list[str]) -> int:
    failed = 0
    for name in names or BENCHMARKS:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        module, *args = PRESETS.get(name, (name,))
        result = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
