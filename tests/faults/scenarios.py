"""The fault scenarios: each injects one fault into a running stack and checks it healed.

Each returns a ``Result``: the counts against the gateway's own numbering
(``harness.Counts``), the seconds from the fault's end to the first events
(or answer) past it, and what the pages said while it lasted. Each raises
``AssertionError`` with a sentence when the product misbehaves. Used by the
tests (which assert the counts are 0) and by ``bench/faults.py`` (which prints them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from stack.servers import PostgresServer, RedisServer
from tests.faults.harness import Counts, Stack, Web, copy_database, wait_for

# How long the store is locked or down, and the gateway or its socket stalled.
STORE_DOWN_S = 30.0
STALL_S = 8.0
# What the pages say while the store's disk is full (adminpanel.degraded).
DISK_FULL = "The store's disk is full"


@dataclass
class Result:
    name: str
    counts: Counts
    recovery_s: float
    banner: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


class Servers:
    """PostgreSQL shared by the scenarios (one database each, copied from a migrated one)
    and a fresh Redis per scenario (one of them stops it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Not under a 0700 parent: the postgres user must enter its folder.
        self.pg_folder = Path(tempfile.mkdtemp(prefix="runboard-faults-pg-"))
        self.pg_folder.chmod(0o755)
        self.postgres = PostgresServer(self.pg_folder / "cluster")
        self.redises: list[RedisServer] = []
        self.template = ""
        self.sqlite_template: Path | None = None
        self.count = 0

    def start(self) -> None:
        self.postgres.start()
        self.template = self.postgres.url
        stack = Stack(self.folder / "template", database_url=self.template)
        stack.manage("migrate", "--noinput", "-v0")
        stack.manage("demo_users")

    def stop(self) -> None:
        for server in self.redises:
            server.stop()
        self.postgres.stop()
        shutil.rmtree(self.pg_folder, ignore_errors=True)

    def database(self) -> str:
        self.count += 1
        return copy_database(self.template, f"faults{self.count}", self.postgres.database)

    def sqlite_var(self, var: Path) -> Path:
        """``var`` holding a migrated SQLite database with the demo users."""
        if self.sqlite_template is None:
            template = self.folder / "sqlite-template"
            Stack(self.folder / "sqlite", var=template).manage("migrate", "--noinput", "-v0")
            Stack(self.folder / "sqlite", var=template).manage("demo_users")
            self.sqlite_template = template / "runboard.sqlite3"
        var.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.sqlite_template, var / "runboard.sqlite3")
        return var

    def redis(self) -> RedisServer:
        server = RedisServer(self.folder / f"redis{len(self.redises)}")
        server.start()
        self.redises.append(server)
        return server

    def folder_for(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    try:
        stack.token = stack.manage("create_api_token", "operator", "--name", "faults").strip()
        yield stack
    finally:
        stack.close()


def watch_banner(
    web: Web, until: Callable[[], bool], timeout_s: float = 90.0, wanted: str = ""
) -> str:
    """The first degraded notice the page shows (holding ``wanted``, if given), polling
    until one shows or ``until()``; else the last notice seen."""
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        if text := web.banner():
            seen = text
            if wanted in text:
                return text
        if until():
            return seen
        time.sleep(0.2)
    return seen


def alive(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        assert proc.poll() is None, f"process {proc.args!r} exited with {proc.returncode}"


def pg_stack(servers: Servers, name: str, **kw: Any) -> Stack:
    redis = servers.redis()
    return Stack(
        servers.folder_for(name), database_url=servers.database(), redis_url=redis.url, **kw
    )


# 1 --------------------------------------------------------------------------------------


def gateway_restart(servers: Servers) -> Result:
    """The gateway SIGKILLed mid-turn and started again: its new boot ends the old locks."""
    with running(pg_stack(servers, "gateway_restart")) as stack:
        gateway, bridge, web = stack.start_gateway(), stack.bridge(), stack.web()
        wait_for("events flow", stack.warmed(100))
        wait_for("a turn holds a lock", lambda: stack.locked_session() is not None)
        old_boot = stack.cursor()[0]
        gateway.kill()
        gateway.wait()
        banner = watch_banner(web, lambda: False, 30)
        assert "gw" in banner, f"the page said nothing while the gateway was down: {banner!r}"
        stack.start_gateway()
        started = time.monotonic()
        wait_for(
            "the new boot's events land",
            lambda: stack.cursor()[0] != old_boot and stack.cursor()[1] > 20,
        )
        recovery = time.monotonic() - started
        stale = stack.sql(
            "SELECT count(*) FROM adminpanel_session s JOIN adminpanel_run r "
            "ON r.session_id = s.id AND r.run_id = s.run_id WHERE s.locked "
            "AND r.boot_id = %s",
            old_boot,
        )[0][0]
        alive(bridge, web.proc)
        counts = stack.counts()
        counts.phantom_locks += int(stale)
        return Result("gateway_restart", counts, recovery, banner, {"old_boot_locks": stale})


# 2 --------------------------------------------------------------------------------------


def bridge_sigkill(servers: Servers) -> Result:
    """The bridge holding the gateway SIGKILLed mid-batch: the other takes over."""
    with running(pg_stack(servers, "bridge_sigkill", rate=15.0)) as stack:
        stack.start_gateway()
        first = stack.bridge("first")
        wait_for("the first bridge holds the gateway", lambda: stack.lease() == first.pid)
        second = stack.bridge("second")
        web = stack.web()
        wait_for("events flow", stack.warmed(100))
        first.kill()
        at_kill = stack.cursor()[1]
        started = time.monotonic()
        banner = watch_banner(web, lambda: stack.lease() == second.pid, 60)
        wait_for("the second bridge takes over", lambda: stack.lease() == second.pid)
        wait_for("its events land", stack.flowing(at_kill + 20))
        recovery = time.monotonic() - started
        alive(second, web.proc)
        return Result("bridge_sigkill", stack.counts(), recovery, banner)


# 3 --------------------------------------------------------------------------------------


def web_sigkill_mid_action(servers: Servers) -> Result:
    """A web worker SIGKILLed between an action's intent and its outcome: marked interrupted
    at the next start, and a retry with the same Idempotency-Key gets that answer."""
    with running(pg_stack(servers, "web_sigkill")) as stack:
        stack.start_gateway()
        bridge = stack.bridge()
        web = stack.web("web1")
        wait_for("events flow", stack.warmed(50))
        wait_for("a turn holds a lock", lambda: stack.locked_session() is not None)
        # The bridge paused: the action's command waits for it, so the worker is mid-action.
        bridge.send_signal(signal.SIGSTOP)
        try:
            target = stack.locked_session()
            assert target is not None
            body = {
                "gateway": "gw",
                "session_key": target[0],
                "expect_run_id": target[1],
                "reason": "fault scenario: worker killed mid-action",
            }
            key = uuid.uuid4().hex
            thread = threading.Thread(
                target=lambda: _quietly(web.act, "force-clear", stack.token, body, key)
            )
            thread.start()
            wait_for("the intent is written", lambda: len(stack.intents()) == 1, 30)
            web.proc.kill()
            web.proc.wait()
            killed = time.monotonic()
        finally:
            bridge.send_signal(signal.SIGCONT)
        thread.join(30)
        assert stack.intents()[0][1] == "", "the killed worker still wrote an outcome"
        # The next worker starts once the attempt is past every deadline it had.
        time.sleep(stack_cutoff_s())
        web2 = stack.web("web2")
        wait_for("the start marked it", lambda: stack.intents()[0][1] != "", 30)
        recovery = time.monotonic() - killed
        status, answer = web2.act("force-clear", stack.token, body, key)
        assert answer.get("result") == "interrupted", f"the retry answered {status} {answer}"
        assert answer.get("repeated") is True
        assert stack.intents() == [(stack.intents()[0][0], "interrupted")]
        alive(bridge, web2.proc)
        counts = stack.counts()
        return Result("web_sigkill_mid_action", counts, recovery, notes={"retry_status": status})


def stack_cutoff_s() -> float:
    """Seconds after which an intent without outcome counts as interrupted (as the workers do)."""
    from adminpanel.action_outcomes import MARGIN_S, OUTCOME_RETRY_S, SETTLE_WAIT_S
    from tests.faults.harness import CALL_TIMEOUT_S

    return CALL_TIMEOUT_S + SETTLE_WAIT_S + sum(OUTCOME_RETRY_S) + MARGIN_S + 1.0


def _quietly(call: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(OSError):  # the worker dies under it
        call(*args)


# 4 --------------------------------------------------------------------------------------


def sqlite_locked(servers: Servers, hold_s: float = STORE_DOWN_S) -> Result:
    """SQLite held by another connection's exclusive transaction: the bridge holds its batch."""
    folder = servers.folder_for("sqlite_locked")
    redis = servers.redis()
    var = servers.sqlite_var(folder / "var")
    with running(Stack(folder, var=var, redis_url=redis.url)) as stack:
        stack.start_gateway()
        bridge, web = stack.bridge(), stack.web()
        wait_for("events flow", stack.warmed(100))
        db = sqlite3.connect(var / "runboard.sqlite3", timeout=60, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            ends = time.monotonic() + hold_s
            banner = watch_banner(web, lambda: time.monotonic() > ends, hold_s)
            while time.monotonic() < ends:
                alive(bridge)
                time.sleep(0.5)
            at_release = stack.cursor()[1]
        finally:
            db.execute("ROLLBACK")
            db.close()
        released = time.monotonic()
        wait_for("events land again", stack.flowing(at_release + 20))
        recovery = time.monotonic() - released
        alive(bridge, web.proc)
        return Result("sqlite_locked", stack.counts(), recovery, banner)


def postgres_restart(servers: Servers, down_s: float = STORE_DOWN_S) -> Result:
    """PostgreSQL stopped and started again on its folder and port: nothing lost."""
    folder = servers.folder_for("postgres_restart")
    pg_folder = Path(tempfile.mkdtemp(prefix="runboard-faults-pg2-"))
    pg_folder.chmod(0o755)
    postgres = PostgresServer(pg_folder / "cluster")
    postgres.start()
    try:
        stack = Stack(folder, database_url=postgres.url, redis_url=servers.redis().url)
        stack.manage("migrate", "--noinput", "-v0")
        stack.manage("demo_users")
        with running(stack):
            stack.start_gateway()
            bridge, web = stack.bridge(), stack.web()
            wait_for("events flow", stack.warmed(100))
            postgres.stop()
            ends = time.monotonic() + down_s
            banner = watch_banner(web, lambda: time.monotonic() > ends, down_s)
            while time.monotonic() < ends:
                alive(bridge)
                time.sleep(0.5)
            postgres.start()
            started = time.monotonic()
            at_start = stack.cursor()[1]
            wait_for("events land again", stack.flowing(at_start + 20))
            recovery = time.monotonic() - started
            alive(bridge, web.proc)
            return Result("postgres_restart", stack.counts(), recovery, banner)
    finally:
        postgres.stop()
        shutil.rmtree(pg_folder, ignore_errors=True)


# 5 --------------------------------------------------------------------------------------


def redis_restart(servers: Servers, down_s: float = 5.0) -> Result:
    """Redis stopped and started on its port: the live push resumes, commands work again."""
    redis = servers.redis()
    folder = servers.folder_for("redis_restart")
    with running(Stack(folder, database_url=servers.database(), redis_url=redis.url)) as stack:
        stack.start_gateway()
        bridge, web = stack.bridge(), stack.web()
        wait_for("events flow", stack.warmed(50))
        assert viewer_pushes(web, 1, 30) >= 1, "no live push before the fault"
        kept = KeptViewer(web)
        redis.stop()
        banner = watch_banner(web, lambda: False, 30)
        assert "Redis" in banner, f"the page did not say Redis is away: {banner!r}"
        time.sleep(down_s)
        redis.start()
        kept.restarted()
        started = time.monotonic()
        wait_for("a viewer gets live pushes again", lambda: viewer_pushes(web, 1, 10) >= 1)
        recovery = time.monotonic() - started
        wait_for(
            "the viewer kept open across the restart is served again or told to reconnect",
            lambda: kept.after_restart() != "silent",
            30,
        )
        wait_for("the banner clears", lambda: "Redis" not in web.banner(), 30)
        answer = act_until_answered(stack, web)
        alive(bridge, web.proc)
        notes = {"action_after": answer, "kept_viewer": kept.after_restart()}
        return Result("redis_restart", stack.counts(), recovery, banner, notes)


class KeptViewer:
    """A viewer socket opened before the fault and read on a thread of its own."""

    def __init__(self, web: Web) -> None:
        self.messages = 0
        self.closed = False
        self.mark = 0
        threading.Thread(target=lambda: asyncio.run(self.read(web)), daemon=True).start()
        wait_for("the kept viewer has its first state", lambda: self.messages > 0, 30)

    async def read(self, web: Web) -> None:
        ws_url = web.url.replace("http", "ws", 1) + "/ws/sessions/"
        headers = {"Cookie": web.cookie_header(), "Origin": web.url}
        try:
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                async for _ in ws:
                    self.messages += 1
        except (OSError, websockets.WebSocketException):
            pass
        self.closed = True

    def restarted(self) -> None:
        self.mark = self.messages

    def after_restart(self) -> str:
        """closed (the page reconnects), receives (pushes again), or silent."""
        if self.closed:
            return "closed"
        return "receives" if self.messages > self.mark else "silent"


def viewer_pushes(web: Web, wanted: int, timeout_s: float) -> int:
    """Live messages one new viewer socket receives (up to ``wanted``) within ``timeout_s``."""

    async def run() -> int:
        ws_url = web.url.replace("http", "ws", 1) + "/ws/sessions/"
        headers = {"Cookie": web.cookie_header(), "Origin": web.url}
        got = 0
        with contextlib.suppress(OSError, asyncio.TimeoutError, websockets.WebSocketException):
            async with asyncio.timeout(timeout_s):
                async with websockets.connect(ws_url, additional_headers=headers) as ws:
                    await ws.recv()  # the current state, sent on connect
                    while got < wanted:
                        await ws.recv()
                        got += 1
        return got

    return asyncio.run(run())


def act_until_answered(stack: Stack, web: Web) -> str:
    """A force-clear through the API that reaches the gateway (not a timeout or an error)."""
    results: list[str] = []

    def answered() -> bool:
        target = stack.locked_session()
        if target is None:
            return False
        body = {
            "gateway": "gw",
            "session_key": target[0],
            "expect_run_id": target[1],
            "reason": "fault scenario: commands after the fault",
        }
        _, answer = web.act("force-clear", stack.token, body, uuid.uuid4().hex)
        results.append(str(answer.get("result")))
        return results[-1] in ("success", "noop", "conflict")

    wait_for(f"an action is carried out (so far: {results})", answered, 60)
    return results[-1]


# 6 --------------------------------------------------------------------------------------


def socket_stall(servers: Servers, stall_s: float = STALL_S) -> Result:
    """The gateway frozen (SIGSTOP) with its socket open: the bridge notices by the missing
    ticks, reconnects once it answers again, and resumes from the store's cursor."""
    with running(pg_stack(servers, "socket_stall", tick_interval_s=1.0)) as stack:
        gateway = stack.start_gateway()
        bridge, web = stack.bridge(), stack.web()
        wait_for("events flow", stack.warmed(100))
        boot = stack.cursor()[0]
        gateway.send_signal(signal.SIGSTOP)
        try:
            ends = time.monotonic() + stall_s
            banner = watch_banner(web, lambda: time.monotonic() > ends, stall_s)
            time.sleep(max(0.0, ends - time.monotonic()))
            at_resume = stack.cursor()[1]
        finally:
            gateway.send_signal(signal.SIGCONT)
        started = time.monotonic()
        wait_for("events land again", stack.flowing(at_resume + 20, boot))
        recovery = time.monotonic() - started
        assert stack.cursor()[0] == boot, "the gateway restarted: this scenario needs one boot"
        alive(bridge, web.proc)
        reconnects = stack.sql("SELECT reconnects FROM adminpanel_gateway WHERE name = 'gw'")
        return Result(
            "socket_stall", stack.counts(), recovery, banner, {"reconnects": int(reconnects[0][0])}
        )


# 7 --------------------------------------------------------------------------------------


class MountRefused(RuntimeError):
    """This machine does not let the scenario mount a small file system."""


@contextlib.contextmanager
def small_disk(path: Path, size: str = "48m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MountRefused(f"mount -t tmpfs refused: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write ``path/filler`` until the file system is full."""
    filler = path / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(chunk)
            out.flush()
    return filler


def disk_full(servers: Servers, full_s: float = 10.0) -> Result:
    """The var folder's disk full (a small tmpfs filled up), then freed: nothing lost."""
    folder = servers.folder_for("disk_full")
    redis = servers.redis()
    with small_disk(folder / "var") as var:
        servers.sqlite_var(var)
        with running(Stack(folder, var=var, redis_url=redis.url)) as stack:
            stack.start_gateway()
            bridge, web = stack.bridge(), stack.web()
            wait_for("events flow", stack.warmed(100))
            filler = fill(var)
            ends = time.monotonic() + full_s
            banner = watch_banner(web, lambda: time.monotonic() > ends, full_s, DISK_FULL)
            while time.monotonic() < ends:
                alive(bridge)
                time.sleep(0.5)
            at_free = stack.cursor()[1]
            filler.unlink()
            started = time.monotonic()
            wait_for("events land again", stack.flowing(at_free + 20))
            recovery = time.monotonic() - started
            wait_for("the banner clears", lambda: DISK_FULL not in web.banner(), 30)
            alive(bridge, web.proc)
            return Result("disk_full", stack.counts(), recovery, banner)


SCENARIOS: dict[str, Callable[[Servers], Result]] = {
    "gateway_restart": gateway_restart,
    "bridge_sigkill": bridge_sigkill,
    "web_sigkill_mid_action": web_sigkill_mid_action,
    "sqlite_locked": sqlite_locked,
    "postgres_restart": postgres_restart,
    "redis_restart": redis_restart,
    "socket_stall": socket_stall,
    "disk_full": disk_full,
}


def describe(result: Result) -> str:
    return json.dumps(
        {
            "scenario": result.name,
            **result.counts.as_dict(),
            "recovery_s": round(result.recovery_s, 2),
            "banner": result.banner,
            **result.notes,
        }
    )
