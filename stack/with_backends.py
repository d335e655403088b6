"""Run a command with a fresh PostgreSQL and Redis: ``python -m stack.with_backends -- CMD``.

The servers start on free loopback ports in a temporary folder; the command
gets ``RUNBOARD_DATABASE_URL`` and ``RUNBOARD_REDIS_URL`` pointing at them,
and both servers stop (and the folder goes) when it ends. `make test` runs the
store, ingest, live, actions, API, audit, retention, lease and observability
tests this way, so they run on the production backends as well as on the
embedded defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stack.servers import ServerError, backends


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m stack.with_backends -- COMMAND [ARGS…]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    with tempfile.TemporaryDirectory(prefix="runboard-backends-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # the postgres user must reach its data folder inside
        try:
            with backends(folder) as (pg, redis):
                print(f"PostgreSQL on {pg.port}, Redis on {redis.port} ({folder})", flush=True)
                env = {
                    **os.environ,
                    "RUNBOARD_DATABASE_URL": pg.url,
                    "RUNBOARD_REDIS_URL": redis.url,
                }
                return subprocess.run(command, env=env, check=False).returncode
        except ServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
