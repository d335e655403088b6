"""PostgreSQL and Redis servers on loopback, in a folder of their own, for tests and `make stack`.

Each server is the machine's own binary (Debian's ``postgresql-15`` and
``redis-server``), started on a free loopback port with its data in the
folder it is given, and stopped with it. Nothing here is a mock: the tests
that run on these servers talk to them exactly as a deployment does.

A missing binary is an error that names the package to install, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def secret_key_env(new_key: Callable[[], str]) -> dict[str, str]:
    """The secret key for child processes: the caller's own (a key or a key file),
    else ``new_key()``. Setting a key beside an inherited key file would make
    every child refuse to start (the two settings exclude each other)."""
    if os.environ.get("RUNBOARD_SECRET_KEY") or os.environ.get("RUNBOARD_SECRET_KEY_FILE"):
        return {}
    return {"RUNBOARD_SECRET_KEY": new_key()}


class ServerError(RuntimeError):
    """A server could not be found, started or reached; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(
    ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited at start (code {proc.returncode}): {_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    raise ServerError(f"{what} was not ready within {START_TIMEOUT_S:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def _postgres_user() -> str | None:
    """initdb and postgres refuse to run as root: run them as the package's ``postgres`` user.

    Started as that user directly (not through runuser), so the process we hold
    is the server itself and our signals reach it.
    """
    return "postgres" if os.geteuid() == 0 else None


class PostgresServer:
    """One PostgreSQL 15 cluster in ``folder`` (created on first start, kept after)."""

    def __init__(self, folder: Path, *, port: int | None = None, database: str = "runboard"):
        self.folder = folder
        self.port = port or free_port()
        self.database = database
        self.user = "runboard"
        self.password = "runboard"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return (
            f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"
            "?sslmode=disable"
        )

    def _bin(self, name: str) -> str:
        path = POSTGRES_BIN / name
        if not path.exists():
            raise ServerError(
                f"{path} is missing: install Debian's postgresql-15 (apt-get install postgresql-15)"
            )
        return str(path)

    def _chown(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")

    def start(self) -> None:
        data = self.folder / "data"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self._chown()
        log = self.folder / "postgres.log"
        if not (data / "PG_VERSION").exists():
            pwfile = self.folder / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            initdb = subprocess.run(
                [self._bin("initdb"), "-D", str(data), "-U", self.user,
                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                check=False, capture_output=True, text=True, timeout=120, cwd=self.folder,
                user=_postgres_user(), group=_postgres_user(),
            )  # fmt: skip
            if initdb.returncode != 0:
                raise ServerError(f"initdb in {data} failed: {initdb.stderr.strip()[-500:]}")
            pwfile.unlink()
        logf = open(log, "ab")  # noqa: SIM115 - the server writes to it until stopped
        if os.geteuid() == 0:
            shutil.chown(log, "postgres", "postgres")
        self._proc = subprocess.Popen(
            [self._bin("postgres"), "-D", str(data),
             "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
             "-c", f"unix_socket_directories={self.folder}",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder,
            user=_postgres_user(), group=_postgres_user(),
        )  # fmt: skip
        logf.close()
        _wait_until(self._accepts, "PostgreSQL", self._proc, log)
        self._create_database()

    def _accepts(self) -> bool:
        result = subprocess.run(
            [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False, timeout=10,
        )  # fmt: skip
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        result = subprocess.run(
            [self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", database, "-tAc", sql],
            check=True, capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        return result.stdout.strip()

    def _create_database(self) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists != "1":
            self.psql(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGINT)  # "fast" shutdown: disconnects clients
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id (PostgreSQL: the postmaster, its backends are children)."""
        if self._proc is None:
            raise ServerError("the server is not started")
        return self._proc.pid


class RedisServer:
    """One Redis 7 server in ``folder``, no persistence: a channel layer keeps nothing."""

    def __init__(self, folder: Path, *, port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is missing: install Debian's redis-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        self._proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--logfile", str(log), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_until(self._accepts, "Redis", self._proc, log)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id (PostgreSQL: the postmaster, its backends are children)."""
        if self._proc is None:
            raise ServerError("the server is not started")
        return self._proc.pid


@contextlib.contextmanager
def backends(folder: Path) -> Iterator[tuple[PostgresServer, RedisServer]]:
    """Start PostgreSQL and Redis in ``folder``; stop both on the way out."""
    pg, redis = PostgresServer(folder / "postgres"), RedisServer(folder / "redis")
    try:
        pg.start()
        redis.start()
        yield pg, redis
    finally:
        redis.stop()
        pg.stop()
