"""The nginx site running for real in front of two stand-in web workers on loopback.

``nginx -t`` only says the site parses; these check what the guide promises:
the redirect, the WebSocket upgrade reaching a worker and carrying bytes both
ways, the forwarded headers, Secure cookies, static files, the body limit and
a dead worker's requests going to the other one.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.nginx_conf import SITE, nginx_command, nginx_conf_around_site

HOST = "runboard.example.com"


class Worker(socketserver.ThreadingTCPServer):
    """Answers each request with the headers it received (JSON); upgrades /ws/ and echoes."""

    daemon_threads = True
    allow_reuse_address = True
    seen: list[dict[str, str]]


class WorkerHandler(socketserver.StreamRequestHandler):
    server: Worker

    def handle(self) -> None:
        request_line = self.rfile.readline().decode()
        headers: dict[str, str] = {"request": request_line.strip()}
        while (line := self.rfile.readline().decode()) not in ("\r\n", "\n", ""):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        headers["port"] = str(self.server.server_address[1])
        self.server.seen.append(headers)
        if headers.get("upgrade", "").lower() == "websocket":
            self.wfile.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            self.wfile.flush()
            while data := self.request.recv(1024):
                self.request.sendall(data.upper())
            return
        body = json.dumps(headers).encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Set-Cookie: sessionid=abc; HttpOnly; Path=/\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    http_port: int
    https_port: int
    workers: list[Worker]
    static: Path
    log: Path


def start_worker() -> Worker:
    worker = Worker(("127.0.0.1", 0), WorkerHandler)
    worker.seen = []
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    return worker


def site_on_ports(http_port: int, https_port: int, workers: list[int], static: Path) -> str:
    """The site as shipped, moved to free loopback ports, the given workers and static folder."""
    site = SITE.read_text()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:443 ssl;": "",
        "server 127.0.0.1:8001 ": f"server 127.0.0.1:{workers[0]} ",
        "server 127.0.0.1:8002 ": f"server 127.0.0.1:{workers[1]} ",
        "alias /var/lib/runboard/staticfiles/;": f"alias {static}/;",
    }
    for old, new in replacements.items():
        assert old in site, f"the site no longer has {old!r}: update this test"
        site = site.replace(old, new)
    return site


def wait_for_port(port: int, nginx: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert nginx.poll() is None, log.read_text() if log.exists() else "nginx exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port} within 20 s")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    workers = [start_worker(), start_worker()]
    static = tmp_path / "staticfiles"
    static.mkdir()
    (static / "app.css").write_text("body { color: teal }\n")
    http_port, https_port = free_port(), free_port()
    site = site_on_ports(http_port, https_port, [w.server_address[1] for w in workers], static)
    # As root, nginx's workers would drop to `nobody`, who cannot enter pytest's tmp folder.
    main = "daemon off;\n" + ("user root;\n" if os.geteuid() == 0 else "")
    conf = nginx_conf_around_site(tmp_path, site, main=main)
    nginx = subprocess.Popen(nginx_command(conf), stderr=subprocess.DEVNULL)
    try:
        wait_for_port(https_port, nginx, tmp_path / "error.log")
        yield Proxy(http_port, https_port, workers, static, tmp_path / "error.log")
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
        for worker in workers:
            worker.shutdown()
            worker.server_close()


def https_request(proxy: Proxy, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """One request over TLS with the site's host name; the status line, headers and body."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname=HOST) as tls,
    ):
        tls.sendall(raw)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return parse_response(data)


def parse_response(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return status, headers, body


def get(proxy: Proxy, path: str, extra: str = "") -> tuple[str, dict[str, str], bytes]:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n"
    return https_request(proxy, request.encode())


def test_plain_http_redirects_to_https(proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.http_port), timeout=10) as s:
        s.sendall(f"GET /stuck/?q=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status, headers, _ = parse_response(data)
    assert status.split()[1] == "301"
    assert headers["location"] == f"https://{HOST}/stuck/?q=1"


def test_a_page_reaches_a_worker_with_the_client_scheme_and_host(proxy: Proxy) -> None:
    status, headers, body = get(proxy, "/sessions/", "X-Forwarded-For: 203.0.113.9\r\n")
    assert status.split()[1] == "200", (status, body)
    seen = json.loads(body)
    assert seen["host"] == HOST
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == HOST
    # The client's own X-Forwarded-For is replaced: daphne trusts the first address.
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert "upgrade" not in seen.get("connection", "").lower()
    assert headers["strict-transport-security"].startswith("max-age=")


def test_cookies_from_the_workers_are_marked_secure(proxy: Proxy) -> None:
    _, headers, _ = get(proxy, "/login/")
    assert "secure" in headers["set-cookie"].lower().split("; ")


def test_the_live_socket_is_upgraded_and_carries_bytes_both_ways(proxy: Proxy) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname=HOST) as tls,
    ):
        tls.sendall(
            f"GET /ws/sessions/ HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert head.split(b" ")[1] == b"101", head
        tls.sendall(b"hello through nginx")
        echoed = b""
        while len(echoed) < len(b"hello through nginx"):
            echoed += tls.recv(1024)
    assert echoed == b"HELLO THROUGH NGINX"
    upgraded = [h for w in proxy.workers for h in w.seen if h["request"].startswith("GET /ws/")]
    assert upgraded[0]["upgrade"] == "websocket"
    assert upgraded[0]["connection"].lower() == "upgrade"


def test_static_files_come_from_the_collectstatic_folder_not_a_worker(proxy: Proxy) -> None:
    status, _, body = get(proxy, "/static/app.css")
    assert status.split()[1] == "200"
    assert body == b"body { color: teal }\n"
    assert not [h for w in proxy.workers for h in w.seen]


def test_a_body_over_one_megabyte_is_refused(proxy: Proxy) -> None:
    size = 1024 * 1024 + 1
    request = (
        f"POST /api/v1/actions/requeue HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + b"x" * size
    status, _, _ = https_request(proxy, request)
    assert status.split()[1] == "413"


def test_a_dead_worker_s_requests_go_to_the_other(proxy: Proxy) -> None:
    dead, alive = proxy.workers
    dead.shutdown()
    dead.server_close()
    for _ in range(4):
        status, _, body = get(proxy, "/")
        assert status.split()[1] == "200"
        assert json.loads(body)["port"] == str(alive.server_address[1])
