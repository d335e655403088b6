"""Start and stop a real OpenClaw gateway on loopback, with or without Runboard's plugin.

Each gateway gets a scratch ``HOME`` holding its own ``~/.openclaw/openclaw.json``
(a custom OpenAI-compatible provider pointing at the fake model server, that
provider's model as the agents' default, the gateway's log file inside the
scratch folder and, with ``plugin=True``, ``plugins.load.paths`` naming
``openclaw_plugin``). It runs ``openclaw gateway run
--allow-unconfigured --auth token --token T --port P --bind loopback`` with the
pinned Node, waits for ``/readyz`` = 200 on the same port, and stops with
SIGTERM, then SIGKILL if it lingers. Nothing listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.openclaw.install import Layout, layout, missing_parts

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "openclaw_plugin"
PLUGIN_ID = "runboard-registry"
PROVIDER = "fake"
MODEL = "fake-1"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0  # a gateway draining a hung turn would wait minutes: kill it


class GatewayStartError(RuntimeError):
    """The gateway did not become ready; the message carries the end of its output."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_config(model_base_url: str, *, plugin: bool, log_file: Path) -> dict[str, Any]:
    """The scratch gateway's openclaw.json (JSON is valid JSON5)."""
    if not model_base_url.startswith(("http://127.0.0.1:", "http://[::1]:", "http://localhost:")):
        raise ValueError(f"the fake model must be on loopback, not {model_base_url}")
    config: dict[str, Any] = {
        "models": {
            "mode": "merge",
            "providers": {
                PROVIDER: {
                    "baseUrl": model_base_url,
                    "apiKey": "sk-fake-loopback",
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": MODEL,
                            "name": "Fake model",
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000,
                            "maxTokens": 4096,
                        }
                    ],
                }
            },
        },
        "agents": {"defaults": {"model": {"primary": f"{PROVIDER}/{MODEL}"}}},
        "logging": {"file": str(log_file)},
    }
    if plugin:
        config["plugins"] = {
            "load": {"paths": [str(PLUGIN_DIR)]},
            "entries": {PLUGIN_ID: {"enabled": True}},
        }
    return config


class OpenClawGateway:
    """One real gateway process. ``start()`` blocks until ready; ``stop()`` is idempotent."""

    def __init__(
        self,
        version: str,
        *,
        model_base_url: str,
        plugin: bool,
        port: int | None = None,
        token: str | None = None,
        lay: Layout | None = None,
    ) -> None:
        self.version = version
        self.plugin = plugin
        self.model_base_url = model_base_url
        self.port = port or free_port()
        self.token = token or secrets.token_hex(16)
        self._layout = lay or layout()
        self.home = Path(tempfile.mkdtemp(prefix=f"runboard-openclaw-{version}-"))
        self.log_file = self.home / "gateway.log"
        self.output_file = self.home / "stdout.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> None:
        config_dir = self.home / ".openclaw"
        config_dir.mkdir(parents=True, exist_ok=True)
        config = gateway_config(self.model_base_url, plugin=self.plugin, log_file=self.log_file)
        (config_dir / "openclaw.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    def _command(self) -> list[str]:
        lay = self._layout
        return [
            str(lay.node),
            str(lay.openclaw_entry(self.version)),
            "gateway",
            "run",
            "--allow-unconfigured",
            "--auth",
            "token",
            "--token",
            self.token,
            "--port",
            str(self.port),
            "--bind",
            "loopback",
        ]

    def _env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            HOME=str(self.home),
            OPENCLAW_HIDE_BANNER="1",
            NO_COLOR="1",
            PATH=f"{self._layout.node.parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        )
        return env

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> OpenClawGateway:
        missing = missing_parts(self._layout, (self.version,))
        if missing:
            raise GatewayStartError(
                "not installed: " + ", ".join(missing) + " (run: python -m tests.openclaw.install)"
            )
        if self.running:
            return self
        self._write_config()
        out = self.output_file.open("ab")
        try:
            self._process = subprocess.Popen(
                self._command(),
                env=self._env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise GatewayStartError(
                    f"openclaw@{self.version} exited early:\n{self.output_tail()}"
                )
            if readyz(self.port) == 200:
                return
            time.sleep(0.25)
        raise GatewayStartError(
            f"openclaw@{self.version} not ready within {timeout_s:.0f} s:\n{self.output_tail()}"
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        process = self._process
        if process is None:
            return
        family = descendants(process.pid)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        # The gateway's own children (its spawn broker runs in a process group of its own).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._process = None

    def restart(self, timeout_s: float = READY_TIMEOUT_S) -> OpenClawGateway:
        self.stop()
        return self.start(timeout_s)

    def cleanup(self) -> None:
        self.stop()
        # A child that outlived the gateway by a moment may still write its last file.
        for _ in range(3):
            shutil.rmtree(self.home, ignore_errors=True)
            if not self.home.exists():
                return
            time.sleep(0.5)

    def output_tail(self, chars: int = 4000) -> str:
        try:
            return self.output_file.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no output)"


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc), children first seen first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def readyz(port: int) -> int | None:
    """HTTP status of ``GET /readyz``, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()
