"""The web app with its bridges in a child process, as an operator runs it.

Shared by the browser tests and the browser benchmarks: ``manage.py demo``
(or another serving command) bridged to one gateway URL, on a free loopback
port, with its own ``RUNBOARD_VAR_DIR``; stopped with SIGINT like Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Upper bounds only: the server starts in a few seconds on an idle machine.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AppServer:
    def __init__(
        self,
        var: Path,
        gateway_url: str,
        *,
        token: str,
        gateway_name: str,
        command: Sequence[str] = ("manage.py", "demo"),
        **settings: str,
    ) -> None:
        self.var = var
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [*command, "--port", str(self.port)]
        self.env = {
            **os.environ,
            "RUNBOARD_VAR_DIR": str(var),
            "RUNBOARD_GATEWAY_URL": gateway_url,
            "RUNBOARD_GATEWAY_TOKEN": token,
            "RUNBOARD_GATEWAY_NAME": gateway_name,
            "RUNBOARD_LOG_LEVEL": "WARNING",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        with open(self.var / f"server-{self.starts}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, *self.command], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def start(self) -> None:
        self.process = self._spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await asyncio.to_thread(self._answers):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.output()}")
            await asyncio.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/login/", timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)

    def output(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.var.glob("server-*.log"))
        )
