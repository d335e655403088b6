"""What the scenarios share: the mirrored store, a chat client, and store/gateway reads."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget
from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import Flag, Gateway, Run, Session, TimelineEvent, Waiter
from gateway_bridge.client import GatewayClient
from tests.contract.targets import Target

GATEWAY = "contract"


def session_key(scenario: str) -> str:
    """A session key no other test uses (real gateways live for a whole module)."""
    return f"agent:main:telegram:direct:{scenario}-{uuid.uuid4().hex[:8]}"


def marked(text: str) -> str:
    """A message the fake model recognises as the user's (see tests/openclaw/fake_model.py)."""
    return f"{text} MSG-{uuid.uuid4().hex[:6]}"


def thresholds(target: Target) -> Thresholds:
    return Thresholds(
        stuck_after_s=target.stuck_after_s,
        terminal_held_after_s=target.stuck_after_s,
        waiter_unbounded_after_s=target.stuck_after_s,
        store_mismatch_after_s=target.stuck_after_s,
    )


@contextlib.asynccontextmanager
async def mirrored(target: Target) -> AsyncIterator[BridgeSupervisor]:
    """The real bridge feeding the real store through the one ingestor, until the block ends."""
    supervisor = BridgeSupervisor(
        [GatewayTarget(GATEWAY, target.url, target.token)],
        ingestor=Ingestor(thresholds=thresholds(target)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        await eventually(lambda: _synced(supervisor), 60.0, "the bridge mirrors the gateway")
        yield supervisor
    finally:
        stop.set()
        await task


async def _synced(supervisor: BridgeSupervisor) -> bool:
    """Connected and the first snapshot is in the store: changes from now on arrive as events."""
    if supervisor.bridge(GATEWAY).state.status != "connected":
        return False
    return await _gateway_booted()


@sync_to_async
def _gateway_booted() -> bool:
    return Gateway.objects.filter(name=GATEWAY).exclude(boot_id="").exists()


@contextlib.asynccontextmanager
async def chat_client(target: Target) -> AsyncIterator[GatewayClient]:
    """A second operator connection, playing the users: chat.send, chat.history."""
    client = GatewayClient(target.url, target.token, connect_timeout_s=30, call_timeout_s=30)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def send(client: GatewayClient, key: str, text: str) -> str:
    payload = await client.call(
        "chat.send", {"sessionKey": key, "message": text, "idempotencyKey": str(uuid.uuid4())}
    )
    assert isinstance(payload, dict) and payload.get("status") in ("started", "in_flight", "ok")
    return str(payload["runId"])


async def history(client: GatewayClient, key: str) -> list[dict[str, Any]]:
    payload = await client.call("chat.history", {"sessionKey": key, "limit": 200})
    messages = payload.get("messages") if isinstance(payload, dict) else None
    return [m for m in messages or [] if isinstance(m, dict)]


def content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def user_count(messages: list[dict[str, Any]], text: str) -> int:
    return sum(1 for m in messages if m.get("role") == "user" and text in content_text(m))


def answered(messages: list[dict[str, Any]], text: str) -> bool:
    """A user message carrying ``text`` followed by an assistant message."""
    for i, m in enumerate(messages):
        if m.get("role") == "user" and text in content_text(m):
            return any(n.get("role") == "assistant" for n in messages[i + 1 :])
    return False


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll until ``check`` holds; the timeout is a generous upper bound only."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110 - the store announces nothing to await
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:.0f} s: {what}") from None


# --- store reads ------------------------------------------------------------------------


@sync_to_async
def session_row(key: str) -> Session | None:
    return Session.objects.filter(gateway__name=GATEWAY, session_key=key).first()


@sync_to_async
def runs_of(key: str) -> list[Run]:
    return list(
        Run.objects.filter(session__gateway__name=GATEWAY, session__session_key=key).order_by("id")
    )


@sync_to_async
def flags_of(key: str, *, active_only: bool = True) -> list[Flag]:
    rows = Flag.objects.filter(session__gateway__name=GATEWAY, session__session_key=key)
    if active_only:
        rows = rows.filter(cleared_at__isnull=True)
    return list(rows)


@sync_to_async
def open_waiters(key: str) -> list[Waiter]:
    return list(
        Waiter.objects.filter(
            session__gateway__name=GATEWAY, session__session_key=key, resolved_at__isnull=True
        ).order_by("since")
    )


@sync_to_async
def timeline_kinds(key: str, run_id: str) -> list[str]:
    rows = TimelineEvent.objects.filter(
        gateway__name=GATEWAY, session__session_key=key, run_id=run_id
    ).order_by("boot_id", "seq", "id")
    return list(rows.values_list("kind", flat=True))


@sync_to_async
def timeline_rows(key: str) -> list[tuple[int | None, str, str]]:
    """(seq, kind, run id) of everything on the session's timeline, for failure messages."""
    rows = TimelineEvent.objects.filter(gateway__name=GATEWAY, session__session_key=key)
    return list(rows.order_by("boot_id", "seq", "id").values_list("seq", "kind", "run_id"))


def locked_by(key: str, run_id: str | None = None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        row = await session_row(key)
        return bool(row and row.locked and (run_id is None or row.run_id == run_id))

    return check


def unlocked(key: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        row = await session_row(key)
        return bool(row and not row.locked)

    return check


def flagged(key: str, code: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(f.code == code for f in await flags_of(key))

    return check


def waiting(key: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await open_waiters(key)) >= count

    return check


def run_released(key: str, run_id: str | None = None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        runs = await runs_of(key)
        return any(
            r.released_at is not None and (run_id is None or r.run_id == run_id) for r in runs
        )

    return check
