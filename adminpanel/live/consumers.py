"""WebSocket consumers: viewers receive the server-rendered rows.

A consumer never queries the database per message: the ``Broadcaster``
renders each change once, the process's ``Relay`` receives it once, and
writes the same HTML to every viewer's socket (``relay.py``). Every
``RUNBOARD_LIVE_SESSION_CHECK_S`` it looks its login session up once (one
primary-key read), so a socket whose user logged out, or whose session
expired, closes with ``CLOSE_LOGGED_OUT`` instead of receiving on.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import import_module
from typing import Any

import structlog
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY

from adminpanel.live.relay import Relay, relay_for
from adminpanel.observability import viewers
from adminpanel.roles import VIEW

log = structlog.get_logger(__name__)

# 4000-4999 are free for applications; 4401 mirrors HTTP 401.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# The login session ended while the socket was open (logged out or expired): live.js
# then says so with a link to log in again. The same code as refusing an anonymous socket.
CLOSE_LOGGED_OUT = CLOSE_UNAUTHENTICATED


def session_still_valid(session_key: str | None, user_pk: Any) -> bool:
    """Whether the login session ``session_key`` still exists, unexpired, for this user."""
    if not session_key:
        return False
    engine = import_module(settings.SESSION_ENGINE)
    data = engine.SessionStore(session_key).load()  # {} when deleted or expired
    return bool(data.get(SESSION_KEY) == str(user_pk))


class SessionsConsumer(AsyncWebsocketConsumer):
    """``/ws/sessions/``: live session rows for logged-in users."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A consumer can end without ``disconnect``: its own channel's receive failed
        # (Redis went away: the socket closes and the browser reconnects and resyncs).
        # Whatever ended it, the relay must not write to it, or hold the group, after.
        try:
            await super().__call__(scope, receive, send)
        finally:
            relay: Relay | None = getattr(self, "relay", None)
            if relay is not None and self in relay.viewers:
                await asyncio.shield(relay.leave(self))

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            log.info("live_viewer_refused", reason="anonymous")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(user.has_perm)(VIEW):
            log.info("live_viewer_refused", reason="no_permission", user=user.get_username())
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session = self.scope.get("session")
        self.session_key: str | None = getattr(session, "session_key", None)
        # The relay is in the group before the socket opens, so the browser (which
        # resyncs when it opens) misses no push; it writes none before the accept.
        self.relay: Relay = relay_for(self.channel_layer)
        await self.relay.join(self, accept=self.accept)
        self.watch = asyncio.create_task(self.watch_session(user))
        await viewers.joined(self.channel_name)

    async def disconnect(self, code: int) -> None:
        watch: asyncio.Task[None] | None = getattr(self, "watch", None)
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        await viewers.left(self.channel_name)  # the relay is left in ``__call__``, at the end

    async def watch_session(self, user: Any) -> None:
        """Close the socket once its login session is gone (checked every few seconds)."""
        check = database_sync_to_async(session_still_valid)
        while True:
            await asyncio.sleep(settings.RUNBOARD_LIVE_SESSION_CHECK_S)
            try:
                valid = await check(self.session_key, user.pk)
            except Exception:  # the database is busy or down: keep the socket, try again
                log.warning("live_session_check_failed", user=user.get_username(), exc_info=True)
                continue
            if not valid:
                log.info("live_viewer_logged_out", user=user.get_username())
                await self.relay.leave(self)
                await self.close(code=CLOSE_LOGGED_OUT)
                return

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Viewers only listen; anything they send is ignored."""

    async def push(self, html: str) -> None:
        """One push from the relay: the rendered rows, as they are."""
        await self.send(text_data=html)
