"""One production-shaped stack for a fault scenario, and the checks every scenario ends with.

Real processes on loopback: a simulated gateway (``python -m simgateway``),
``manage.py runbridge`` bridges and ``manage.py runweb`` workers, on a fresh
PostgreSQL database or SQLite file, with Redis as the channel layer. Shared by
``tests/faults`` and ``bench/faults.py``, so the bench measures what the tests check.

The checks count against the gateway's own numbering: per boot, the timeline's
sequence numbers must run without a hole from the first stored to the last
(``lost``) and appear once each (``duplicated``); every action intent needs
an outcome (``unaudited``); and a lock the store shows must be one the gateway
holds (``phantom_locks``; compared with the gateway's own snapshot, twice, so
a lock taken between the two reads is not counted).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import psycopg

from gateway_bridge.client import GatewayClient

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "gw"
TOKEN = "faults-token"
PASSWORD = "faults-password-1"
# Upper bounds for liveness only; nothing here asserts how fast.
WAIT_S = 90.0
LEASE_S = 4
CALL_TIMEOUT_S = 1.0
# Events stored before a fault is injected (the tests check more than 50 in all).
WARM_EVENTS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> float:
    """Poll ``check`` until true; returns the seconds it took (fails after ``timeout_s``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting: {what}")
        time.sleep(0.2)
    return time.monotonic() - started


@dataclass
class Counts:
    lost: int = 0
    duplicated: int = 0
    unaudited: int = 0
    phantom_locks: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unaudited": self.unaudited,
            "phantom_locks": self.phantom_locks,
        }


class Web:
    """One ``runweb`` worker and a logged-in operator's cookies for it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/login/", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def login(self, username: str = "operator") -> None:
        with self.opener.open(f"{self.url}/login/", timeout=10) as r:
            html = r.read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert csrf, "the login page has no CSRF token"
        data = urllib.parse.urlencode(
            {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf.group(1)}
        ).encode()
        request = urllib.request.Request(
            f"{self.url}/login/", data=data, headers={"Referer": f"{self.url}/login/"}
        )
        with self.opener.open(request, timeout=10) as r:
            assert "/login" not in r.url, f"login as {username} failed"

    def page(self, path: str = "/") -> tuple[int, str]:
        try:
            with self.opener.open(f"{self.url}{path}", timeout=30) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def banner(self) -> str:
        """The degraded notices the sessions page shows now (blank: none)."""
        try:
            _, html = self.page("/")
        except OSError:
            return ""
        found = re.search(r'<div class="degraded"[^>]*>(.*?)</div>', html, re.S)
        return html_unescape(re.sub(r"<[^>]+>", " ", found.group(1)).strip()) if found else ""

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def act(
        self, action: str, token: str, body: dict[str, str], key: str
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.url}/api/v1/actions/{action}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return int(r.status), json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read() or b"{}")


class Stack:
    """The processes of one scenario; ``close()`` stops every one of them."""

    def __init__(
        self,
        folder: Path,
        *,
        database_url: str = "",
        redis_url: str = "",
        var: Path | None = None,
        tick_interval_s: float = 15.0,
        rate: float = 6.0,
        sessions: int = 24,
    ) -> None:
        self.folder = folder
        self.var = var or folder / "var"
        self.var.mkdir(parents=True, exist_ok=True)
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.port = free_port()
        self.gateway_args = [
            "--gateway",
            f"{GATEWAY}=2026.9:{self.port}",
            "--token",
            TOKEN,
            "--workload",
            "steady",
            "--rate",
            str(rate),
            "--sessions",
            str(sessions),
            "--tick-interval-s",
            str(tick_interval_s),
        ]
        self.env = {
            **os.environ,
            "RUNBOARD_VAR_DIR": str(self.var),
            "RUNBOARD_GATEWAY_URL": f"ws://127.0.0.1:{self.port}",
            "RUNBOARD_GATEWAY_TOKEN": TOKEN,
            "RUNBOARD_GATEWAY_NAME": GATEWAY,
            "RUNBOARD_BRIDGE_LEASE_S": str(LEASE_S),
            "RUNBOARD_BACKOFF_MAX_S": "1",
            "RUNBOARD_CALL_TIMEOUT_S": str(CALL_TIMEOUT_S),
            "RUNBOARD_CONNECT_TIMEOUT_S": "3",
            "RUNBOARD_DEMO_PASSWORD": PASSWORD,
            "RUNBOARD_LOG_LEVEL": "INFO",
        }
        for name, value in (
            ("RUNBOARD_DATABASE_URL", database_url),
            ("RUNBOARD_REDIS_URL", redis_url),
        ):
            if value:
                self.env[name] = value
            else:
                self.env.pop(name, None)
        self.started: list[subprocess.Popen[bytes]] = []
        self.gateway: subprocess.Popen[bytes] | None = None
        self.token = ""

    # --- processes -------------------------------------------------------------------

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=180,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child writes it
        proc = subprocess.Popen(
            list(argv), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.started.append(proc)
        return proc

    def start_gateway(self) -> subprocess.Popen[bytes]:
        self.gateway = self.start("gateway", sys.executable, "-m", "simgateway", *self.gateway_args)
        wait_for("the gateway listens", self._gateway_listens, 30)
        return self.gateway

    def _gateway_listens(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def bridge(self, name: str = "bridge") -> subprocess.Popen[bytes]:
        return self.start(name, sys.executable, "manage.py", "runbridge")

    def web(self, name: str = "web") -> Web:
        port = free_port()
        proc = self.start(name, sys.executable, "manage.py", "runweb", "--port", str(port))
        web = Web(proc, port)
        wait_for(f"web worker {name} answers", lambda: web.up() or proc.poll() is not None, 60)
        assert proc.poll() is None, f"web worker {name} exited: see {self.logs}/{name}.log"
        web.login()
        return web

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # --- the store -------------------------------------------------------------------

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        if self.database_url.startswith("postgres"):
            url = self.database_url.replace("postgres://", "postgresql://")
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as db:
                return db.execute(statement, params).fetchall()  # type: ignore[arg-type]
        with sqlite3.connect(self.var / "runboard.sqlite3", timeout=60) as db:
            return db.execute(statement.replace("%s", "?"), params).fetchall()

    def cursor(self) -> tuple[str, int]:
        rows = self.sql("SELECT boot_id, last_seq FROM adminpanel_gateway WHERE name = %s", GATEWAY)
        return (str(rows[0][0]), int(rows[0][1])) if rows else ("", 0)

    def flowing(self, beyond: int = 0, boot_id: str = "") -> Callable[[], bool]:
        """True once the store's cursor passed ``beyond`` (in ``boot_id`` if given)."""

        def check() -> bool:
            boot, seq = self.cursor()
            return bool(boot) and seq > beyond and (not boot_id or boot == boot_id)

        return check

    def warmed(self, beyond: int) -> Callable[[], bool]:
        """``flowing(beyond)``, and enough events stored that the checks mean something:
        a bridge that started late (a slow machine) mirrors from a high sequence number."""
        flowing = self.flowing(beyond)
        return lambda: flowing() and self.stored() > WARM_EVENTS

    def stored(self) -> int:
        """The gateway's timeline events in the store (every boot)."""
        rows = self.sql(
            "SELECT count(*) FROM adminpanel_timelineevent t JOIN adminpanel_gateway g "
            "ON g.id = t.gateway_id WHERE g.name = %s AND t.seq IS NOT NULL "
            "AND t.kind <> 'snapshot'",
            GATEWAY,
        )
        return int(rows[0][0])

    def lease(self) -> int | None:
        """The pid of the bridge holding the gateway's lease now, if any holds it."""
        rows = self.sql(
            "SELECT l.pid, l.expires_at FROM adminpanel_gatewaylease l JOIN "
            "adminpanel_gateway g ON g.id = l.gateway_id WHERE g.name = %s",
            GATEWAY,
        )
        if not rows:
            return None
        pid, expires = rows[0]
        return int(pid) if as_datetime(expires) > datetime.now(UTC) else None

    def intents(self) -> list[tuple[int, str]]:
        """Every action intent, with its outcome's result ('' when it has none)."""
        rows = self.sql(
            "SELECT i.id, o.result FROM adminpanel_auditentry i LEFT JOIN "
            "adminpanel_auditentry o ON o.intent_id = i.id WHERE i.kind = 'intent'"
        )
        return [(int(r[0]), str(r[1] or "")) for r in rows]

    def locked_session(self) -> tuple[str, str] | None:
        rows = self.sql(
            "SELECT s.session_key, s.run_id FROM adminpanel_session s WHERE "
            "s.locked AND s.run_id <> '' ORDER BY s.lock_acquired_at LIMIT 1"
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    # --- the checks ------------------------------------------------------------------

    def counts(self) -> Counts:
        counts = Counts()
        rows = self.sql(
            "SELECT t.boot_id, t.seq FROM adminpanel_timelineevent t JOIN "
            "adminpanel_gateway g ON g.id = t.gateway_id WHERE g.name = %s "
            "AND t.seq IS NOT NULL AND t.kind <> 'snapshot'",
            GATEWAY,
        )
        boots: dict[str, list[int]] = {}
        for boot, seq in rows:
            boots.setdefault(str(boot), []).append(int(seq))
        for boot, seqs in boots.items():
            unique = set(seqs)
            missing = set(range(min(unique), max(unique) + 1)) - unique
            counts.lost += len(missing)
            counts.duplicated += len(seqs) - len(unique)
            counts.detail[boot] = {
                "events": len(seqs),
                "first": min(unique),
                "last": max(unique),
                "missing": sorted(missing)[:20],
            }
        counts.unaudited = sum(1 for _, result in self.intents() if not result)
        counts.phantom_locks = len(self.phantom_locks())
        return counts

    def phantom_locks(self, rounds: int = 2) -> set[tuple[str, str]]:
        """Locks the store shows that the gateway does not hold, in every one of ``rounds``."""
        phantoms: set[tuple[str, str]] | None = None
        for _ in range(rounds):
            snapshot = asyncio.run(gateway_snapshot(f"ws://127.0.0.1:{self.port}"))
            held = {(e["sessionKey"], e["runId"]) for e in snapshot["entries"]}
            wait_for(
                "the store reaches the gateway's snapshot",
                self.flowing(int(snapshot["seq"]) - 1, str(snapshot["bootId"])),
            )
            rows = self.sql("SELECT session_key, run_id FROM adminpanel_session WHERE locked")
            extra = {(str(k), str(r)) for k, r in rows} - held
            phantoms = extra if phantoms is None else phantoms & extra
            time.sleep(1.0)
        return phantoms or set()


async def gateway_snapshot(url: str) -> dict[str, Any]:
    client = GatewayClient(url, TOKEN, connect_timeout_s=10, call_timeout_s=10)
    try:
        await client.connect()
        result: dict[str, Any] = await client.call("runboard.registry.snapshot", {})
        return result
    finally:
        await client.close()


def as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def with_signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)


def copy_database(postgres_url: str, name: str, template: str) -> str:
    """A new database ``name`` copied from ``template`` (already migrated) on one server."""
    admin = re.sub(r"/[^/?]+\?", "/postgres?", postgres_url).replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')  # type: ignore[arg-type]
    return re.sub(r"/[^/?]+\?", f"/{name}?", postgres_url)
