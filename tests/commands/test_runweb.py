"""``manage.py runweb``: a web worker checks its backends, then serves until SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runweb(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runweb", "--port", str(port)],
        cwd=ROOT, env={**os.environ, "RUNBOARD_VAR_DIR": str(tmp_path), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_an_unreachable_database_stops_the_worker_naming_the_setting(tmp_path: Path) -> None:
    url = f"postgres://runboard:hunter2@127.0.0.1:{free_port()}/runboard"
    proc = runweb(tmp_path, free_port(), RUNBOARD_DATABASE_URL=url)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "RUNBOARD_DATABASE_URL: cannot connect to postgres://runboard:***@127.0.0.1" in err
    assert "hunter2" not in err and "Traceback" not in err


def test_an_unreachable_redis_stops_the_worker_naming_the_setting(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                   env={**os.environ, "RUNBOARD_VAR_DIR": str(tmp_path)}, timeout=120)  # fmt: skip
    proc = runweb(tmp_path, free_port(), RUNBOARD_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "RUNBOARD_REDIS_URL: cannot reach redis://127.0.0.1:" in err


def test_the_worker_serves_pages_and_stops_on_sigterm(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                   env={**os.environ, "RUNBOARD_VAR_DIR": str(tmp_path)}, timeout=120)  # fmt: skip
    port = free_port()
    proc = runweb(tmp_path, port)
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as r:
                    status = r.status
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                time.sleep(0.2)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
