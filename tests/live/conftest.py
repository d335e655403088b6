"""A real redis-server on a Unix socket in the test's folder, and a Redis layer over it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest


class RedisOnSocket:
    """redis-server without persistence on ``folder/redis.sock``; ``restart`` forgets everything."""

    def __init__(self, folder: Path) -> None:
        server = shutil.which("redis-server")
        missing = "redis-server is missing: make test installs Debian's redis-server"
        assert server is not None, missing
        self.socket = folder / "redis.sock"
        self.args = [server, "--port", "0", "--unixsocket", str(self.socket), "--save", ""]
        self.args += ["--dir", str(folder)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        process = self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10  # a generous bound for the server to start
        while not self.socket.exists():
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not open its socket"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        self.socket.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisOnSocket]:
    server = RedisOnSocket(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_socket(redis_server: RedisOnSocket) -> Path:
    return redis_server.socket


@pytest.fixture
async def layer(redis_socket: Path) -> AsyncIterator[Any]:
    from adminpanel.live.redis_layer import RedisChannelLayer

    redis = RedisChannelLayer(hosts=[f"unix://{redis_socket}"], group_expiry=60)
    try:
        yield redis
    finally:
        await redis.flush()
