"""What benches share: SIGTERM stops a bench the way Ctrl-C does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BENCH = """
import sys, time
from pathlib import Path
from bench.support import exit_on_sigterm
exit_on_sigterm()
try:
    print("started", flush=True)
    time.sleep(60)
finally:
    Path(sys.argv[1]).write_text("stopped its children")
"""


def test_sigterm_runs_the_benchs_finally_blocks(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bench = subprocess.Popen(
        [sys.executable, "-c", BENCH, str(marker)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert bench.stdout is not None
    assert bench.stdout.readline().strip() == "started"

    bench.send_signal(signal.SIGTERM)
    code = bench.wait(timeout=30)

    assert code == 128 + signal.SIGTERM
    assert marker.read_text() == "stopped its children"
