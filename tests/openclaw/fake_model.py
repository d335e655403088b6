"""A fake OpenAI-compatible model server on loopback, for real OpenClaw gateways.

``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models``.
Each request is answered according to directives in the user's text:

- ``HANG``: never answers (the connection stays open until the server stops);
- ``STALL:<s>``: answers after *s* seconds;
- anything else: answers ``pong <text>`` at once.

OpenClaw may wrap the turn: the last user message is not always the user's
text (it can be a system-ish envelope while the text sits in an earlier user
message). The directive text is the last user message carrying a marker the
tests put in every message (``MSG-``), else the last user message.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKER = "MSG-"
MODEL_ID = "fake-1"
_STALL = re.compile(r"STALL:(\d+(?:\.\d+)?)")
# OpenClaw prefixes the user's text with a time envelope: "[Sun 2026-11-22 01:39 UTC] hello".
_ENVELOPE = re.compile(r"^\s*\[[^\]]*\]\s*")


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message; content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def user_text(messages: list[Any]) -> str:
    """The user's text of this turn (see the module docstring)."""
    users = [message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    for text in reversed(users):
        if MARKER in text:
            return _last_line_with_marker(text)
    return users[-1] if users else ""


def _last_line_with_marker(text: str) -> str:
    lines = [line for line in text.splitlines() if MARKER in line]
    return _ENVELOPE.sub("", lines[-1]).strip() if lines else text.strip()


@dataclass(frozen=True)
class Directive:
    hang: bool = False
    stall_s: float = 0.0


def directive_for(text: str) -> Directive:
    if "HANG" in text:
        return Directive(hang=True)
    stall = _STALL.search(text)
    return Directive(stall_s=float(stall.group(1))) if stall else Directive()


@dataclass
class Seen:
    """One request the server received: what it understood and did."""

    text: str
    stream: bool
    directive: Directive
    at: float = field(default_factory=time.time)


class FakeModelServer:
    """Run with ``start()`` / ``stop()``; ``base_url`` ends in ``/v1``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the fake model server listens on loopback only")
        self._stopping = threading.Event()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeModelServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes every HANG / STALL handler
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def texts(self) -> list[str]:
        with self._lock:
            return [s.text for s in self.seen]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            owner = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: FakeModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "body is not JSON"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        messages = body.get("messages") if isinstance(body, dict) else None
        text = user_text(messages if isinstance(messages, list) else [])
        directive = directive_for(text)
        stream = bool(body.get("stream"))
        self.owner._record(Seen(text=text, stream=stream, directive=directive))
        if directive.hang:
            self.owner._stopping.wait()
            self.close_connection = True
            return
        if directive.stall_s and self.owner._stopping.wait(directive.stall_s):
            self.close_connection = True
            return
        answer = f"pong {text}".strip()
        if stream:
            self._stream(answer)
        else:
            self._json(200, _completion(answer))

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, answer: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for chunk in _chunks(answer):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _completion(answer: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunks(answer: str) -> Iterator[dict[str, Any]]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL_ID,
    }
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {"content": answer}, "finish_reason": None}]}
    yield {
        **base,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
