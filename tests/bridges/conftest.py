"""A PostgreSQL server for the module's tests, and helpers to run real bridge processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from stack.servers import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    # Not under pytest's tmp folder: the postgres user cannot enter its 0700 parents.
    folder = Path(tempfile.mkdtemp(prefix="runboard-pg-"))
    folder.chmod(0o755)
    server = PostgresServer(folder / "cluster")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Processes:
    """Processes of one test, on one database; all of them stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                       check=True, timeout=180)  # fmt: skip

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        self.started.append(proc)
        return proc

    def bridge(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, sys.executable, "manage.py", "runbridge")

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on the module's server, for one test."""
    name = f"t{os.getpid()}_{free_port()}"
    postgres.psql(f'CREATE DATABASE "{name}"')
    yield postgres.url.replace(f"/{postgres.database}?", f"/{name}?")
    postgres.psql(f'DROP DATABASE "{name}" WITH (FORCE)')


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as db:
        return db.execute(sql, params).fetchall()  # type: ignore[arg-type]
