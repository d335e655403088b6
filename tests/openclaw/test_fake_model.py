"""The fake OpenAI-compatible model server: directives, and answers over real loopback HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.openclaw.fake_model import FakeModelServer, directive_for, user_text


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    server = FakeModelServer().start()
    try:
        yield server
    finally:
        server.stop()


def post(server: FakeModelServer, body: dict[str, Any], timeout: float = 10) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(body),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_the_users_text_is_found_in_an_earlier_user_message_and_its_envelope_dropped() -> None:
    messages = [
        {"role": "system", "content": "you are helpful"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "[Sun 2026-11-22 01:39 UTC] hi MSG-1"}],
        },
        {"role": "assistant", "content": "…"},
        {"role": "user", "content": "Continue where you left off."},
    ]
    assert user_text(messages) == "hi MSG-1"


def test_directives_hang_stall_and_answer() -> None:
    assert directive_for("please HANG MSG-1").hang
    assert directive_for("slow STALL:1.5 MSG-2").stall_s == 1.5
    assert directive_for("hello MSG-3") == directive_for("")


def test_a_plain_message_is_answered_pong_both_streaming_and_not(model: FakeModelServer) -> None:
    body = {"model": "fake-1", "messages": [{"role": "user", "content": "hello MSG-a"}]}
    status, text = post(model, body)
    assert status == 200
    assert json.loads(text)["choices"][0]["message"]["content"] == "pong hello MSG-a"
    status, text = post(model, {**body, "stream": True})
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert status == 200 and streamed == "pong hello MSG-a" and text.rstrip().endswith("[DONE]")


def test_a_hanging_request_gets_no_answer_until_the_server_stops() -> None:
    server = FakeModelServer().start()
    outcome: list[object] = []

    def ask() -> None:
        try:
            outcome.append(post(server, {"messages": [{"role": "user", "content": "HANG MSG-h"}]}))
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    deadline = time.monotonic() + 10
    while not server.texts() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.texts() == ["HANG MSG-h"] and outcome == []
    server.stop()
    asker.join(timeout=10)
    assert len(outcome) == 1 and not isinstance(outcome[0], tuple)
