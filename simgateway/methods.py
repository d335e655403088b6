"""The gateway methods the simulated gateway answers, with strict parameter checks.

Each handler is synchronous: it reads or changes the registry and returns the
response payload at once, so a ``subscribe`` response is queued before any
registry event that follows it. Bad params raise ``RequestError``
(``INVALID_REQUEST`` with a message naming the field).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from simgateway.records import TEXT_CHARS, ms

if TYPE_CHECKING:
    from simgateway.server import Connection, SimGateway

READ, WRITE, ADMIN = "operator.read", "operator.write", "operator.admin"
# A broader operator scope satisfies a narrower one.
SCOPE_IMPLIES: dict[str, frozenset[str]] = {
    READ: frozenset({READ, WRITE, ADMIN}),
    WRITE: frozenset({WRITE, ADMIN}),
    ADMIN: frozenset({ADMIN}),
}
MAX_KEY_CHARS = 512
MAX_ID_CHARS = 200
MAX_REQUEUE = 50


class RequestError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return error


Handler = Callable[["SimGateway", "Connection", dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Method:
    scope: str
    handler: Handler


def has_scope(granted: frozenset[str], needed: str) -> bool:
    return bool(granted & SCOPE_IMPLIES[needed])


# --- parameter checks ------------------------------------------------------------


class Params:
    """Reads one request's params, naming the method and field in every complaint."""

    def __init__(self, method: str, params: dict[str, Any], allowed: frozenset[str]) -> None:
        self.method = method
        self.params = params
        for name in params:
            if name not in allowed:
                self.fail(f"unexpected property '{name}'")

    def fail(self, problem: str) -> NoReturn:
        raise RequestError("INVALID_REQUEST", f"invalid {self.method} params: {problem}")

    def string(self, name: str, *, limit: int, required: bool = True) -> str | None:
        value = self.params.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"'{name}' must be a non-empty string")
        assert isinstance(value, str)
        if len(value) > limit:
            self.fail(f"'{name}' is longer than {limit} characters")
        return value

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.params.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(f"'{name}' must be an integer from {low} to {high}")
        return int(value)


def _required(params: Params, name: str, limit: int) -> str:
    value = params.string(name, limit=limit)
    assert value is not None
    return value


# --- OpenClaw methods --------------------------------------------------------------


def health(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    return {"ok": True, "ts": ms(time.time()), "durationMs": 0, "defaultAgentId": "main"}


def status(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    return {
        "version": gw.profile.version,
        "uptimeMs": gw.uptime_ms(),
        "sessions": {"count": len(gw.registry.session_rows())},
    }


def sessions_list(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params("sessions.list", params, frozenset({"limit", "offset"}))
    limit = p.integer("limit", default=100, low=1, high=1000)
    offset = p.integer("offset", default=0, low=0, high=1_000_000)
    rows = gw.registry.session_rows()
    page = rows[offset : offset + limit]
    return {"ts": ms(time.time()), "count": len(page), "totalCount": len(rows), "sessions": page}


def chat_send(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params(
        "chat.send",
        params,
        frozenset({"sessionKey", "message", "idempotencyKey", "thinking", "deliver", "timeoutMs"}),
    )
    key = _required(p, "sessionKey", MAX_KEY_CHARS)
    message = params.get("message")
    if not isinstance(message, str):
        p.fail("'message' must be a string")
    idempotency_key = _required(p, "idempotencyKey", MAX_ID_CHARS)
    run_id, state = gw.registry.dispatch(key, message, idempotency_key=idempotency_key)
    return {"runId": run_id, "status": state}


def chat_abort(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params("chat.abort", params, frozenset({"sessionKey", "runId"}))
    key = _required(p, "sessionKey", MAX_KEY_CHARS)
    run_id = p.string("runId", limit=MAX_ID_CHARS, required=False)
    run_ids = gw.registry.abort(key, run_id)
    return {"ok": True, "aborted": bool(run_ids), "runIds": run_ids}


def chat_history(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params("chat.history", params, frozenset({"sessionKey", "limit"}))
    key = _required(p, "sessionKey", MAX_KEY_CHARS)
    limit = p.integer("limit", default=200, low=1, high=1000)
    session = gw.registry.session(key)
    messages = session.history[-limit:] if session else []
    return {
        "sessionKey": key,
        "sessionId": session.session_id if session else "",
        "messages": list(messages),
    }


def logs_tail(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params("logs.tail", params, frozenset({"cursor", "limit", "maxBytes"}))
    cursor = None
    if "cursor" in params:
        cursor = p.integer("cursor", default=0, low=0, high=2**53)
    limit = p.integer("limit", default=500, low=1, high=5000)
    return gw.logs.tail(cursor, limit)


# --- Runboard's registry methods ---------------------------------------------------


def registry_snapshot(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    Params("runboard.registry.snapshot", params, frozenset())
    return gw.registry.snapshot()


def registry_subscribe(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params("runboard.registry.subscribe", params, frozenset({"bootId", "afterSeq"}))
    boot_id = p.string("bootId", limit=MAX_ID_CHARS, required=False)
    after = p.integer("afterSeq", default=-1, low=-1, high=2**53) if "afterSeq" in params else None
    if (boot_id is None) != (after is None):
        p.fail("'bootId' and 'afterSeq' go together")
    replayed = gw.subscribe(conn, boot_id, after)
    answer: dict[str, Any] = {"bootId": gw.registry.boot_id, "seq": gw.registry.seq}
    if after is not None:
        answer["replayed"] = replayed
    return answer


def registry_force_clear(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params(
        "runboard.registry.forceClear", params, frozenset({"sessionKey", "expectRunId", "reason"})
    )
    key = _required(p, "sessionKey", MAX_KEY_CHARS)
    expect = _required(p, "expectRunId", MAX_ID_CHARS)
    reason = _required(p, "reason", 500)
    return gw.registry.force_clear(key, expect, reason)


def registry_requeue(gw: SimGateway, conn: Connection, params: dict[str, Any]) -> Any:
    p = Params("runboard.registry.requeue", params, frozenset({"sessionKey", "messages"}))
    key = _required(p, "sessionKey", MAX_KEY_CHARS)
    messages = params.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_REQUEUE:
        p.fail(f"'messages' must be a list of 1 to {MAX_REQUEUE} messages")
    pairs = []
    for i, item in enumerate(messages):
        if not isinstance(item, dict):
            p.fail(f"'messages[{i}]' must be an object")
        m = Params(
            f"runboard.registry.requeue messages[{i}]", item, frozenset({"text", "idempotencyKey"})
        )
        pairs.append(
            (_required(m, "text", TEXT_CHARS), _required(m, "idempotencyKey", MAX_ID_CHARS))
        )
    return {"results": gw.registry.requeue(key, pairs)}


def _method(scope: str, handler: Handler) -> Method:
    return Method(scope, handler)


METHODS: dict[str, Method] = {
    "health": _method(READ, health),
    "status": _method(READ, status),
    "sessions.list": _method(READ, sessions_list),
    "chat.send": _method(WRITE, chat_send),
    "chat.abort": _method(WRITE, chat_abort),
    "chat.history": _method(READ, chat_history),
    "logs.tail": _method(READ, logs_tail),
    "runboard.registry.snapshot": _method(READ, registry_snapshot),
    "runboard.registry.subscribe": _method(READ, registry_subscribe),
    "runboard.registry.forceClear": _method(ADMIN, registry_force_clear),
    "runboard.registry.requeue": _method(WRITE, registry_requeue),
}
EVENTS: tuple[str, ...] = (
    "connect.challenge",
    "agent",
    "chat",
    "sessions.changed",
    "health",
    "tick",
    "shutdown",
    "runboard.registry",
)


# What only the companion plugin adds: a stock OpenClaw (``plugin=False``) has none of it.
PLUGIN_PREFIX = "runboard.registry"


def is_plugin_name(name: str) -> bool:
    return name == PLUGIN_PREFIX or name.startswith(PLUGIN_PREFIX + ".")


def method_names(*, plugin: bool) -> tuple[str, ...]:
    """The methods ``hello-ok`` lists, with or without the companion plugin."""
    return tuple(m for m in METHODS if plugin or not is_plugin_name(m))


def event_names(*, plugin: bool) -> tuple[str, ...]:
    """The events ``hello-ok`` lists, with or without the companion plugin."""
    return tuple(e for e in EVENTS if plugin or not is_plugin_name(e))


def call(gw: SimGateway, conn: Connection, method_name: str, params: dict[str, Any]) -> Any:
    """Run one request. Raises ``RequestError`` for anything the client got wrong."""
    method = METHODS.get(method_name)
    if method is None or (not gw.plugin and is_plugin_name(method_name)):
        raise RequestError("INVALID_REQUEST", f"unknown method: {method_name}")
    if not has_scope(conn.scopes, method.scope):
        raise RequestError(
            "FORBIDDEN",
            f"missing scope: {method.scope}",
            {
                "code": "MISSING_SCOPE",
                "missingScope": method.scope,
                "requiredScopes": [method.scope],
            },
        )
    return method.handler(gw, conn, params)
