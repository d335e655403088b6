"""The demo's bridges in a process of their own, next to the web server.

Ingest's SQLite statements and the broadcaster's renders hold the GIL for much
of a loaded second; in the web server's process they would delay the event
loop that carries every viewer's socket. So ``manage.py demo`` runs
``manage.py runbridge`` as a child: the child owns the gateways' sockets,
ingest, the flag rules, the broadcaster and recovery; the web process serves
pages and sockets. They share the web process's channel layer through the
channel hub (``adminpanel/live/hub.py``): pushed rows reach the viewers,
operator actions reach the bridges (``command_client`` → ``command_server``),
as with Redis.

The child dies with its parent (``PR_SET_PDEATHSIG``). If it dies on its own,
it is started again after a pause that doubles up to ``RESTART_MAX_S`` and
starts over once a child has run for ``HEALTHY_AFTER_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog
from channels.layers import BaseChannelLayer
from django.conf import settings

from adminpanel.live.hub import ChannelHub
from adminpanel.live.layers import in_this_process

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0
STOP_TIMEOUT_S = 10.0
MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"


def die_with_parent() -> None:
    """Runs in a child before exec: if the parent dies hard, the child goes with it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(child: subprocess.Popen[bytes], *, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout_s``."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class BridgeProcess:
    """Keeps one ``manage.py runbridge`` child running, reaching this process's layer.

    With the in-memory layer the child reaches it through a ``ChannelHub``;
    with Redis (``RUNBOARD_REDIS_URL``) both processes use Redis and no hub runs.
    """

    def __init__(self, layer: BaseChannelLayer | None) -> None:
        self.hub = ChannelHub(layer) if in_this_process(layer) else None
        self.child: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if self.hub is not None:
            env["RUNBOARD_CHANNEL_HUB"] = self.hub.path
        self.starts += 1
        # A session of its own: Ctrl-C reaches the web process, which stops the child
        # (a child stopping on the same Ctrl-C would look like a crash, and be restarted).
        child = subprocess.Popen(
            [sys.executable, str(MANAGE_PY), "runbridge"],
            env=env,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        log.info("bridge_process_started", pid=child.pid, starts=self.starts)
        return child

    async def run(self, stop: asyncio.Event) -> None:
        """Start the hub and the child; start the child again whenever it dies, until ``stop``."""
        if self.hub is not None:
            await self.hub.start()
        pause = RESTART_FIRST_S
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self.child = child = self._spawn()
                started = time.monotonic()
                exited = asyncio.ensure_future(asyncio.to_thread(child.wait))
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    await asyncio.to_thread(stop_process, child)
                    await exited
                    break
                if time.monotonic() - started > HEALTHY_AFTER_S:
                    pause = RESTART_FIRST_S
                log.warning(
                    "bridge_process_exited", returncode=child.returncode, restart_in_s=pause
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, RESTART_MAX_S)
        finally:
            stopping.cancel()
            if self.child is not None and self.child.poll() is None:
                await asyncio.to_thread(stop_process, self.child)
            if self.hub is not None:
                await self.hub.close()
            log.info("bridge_process_stopped")
