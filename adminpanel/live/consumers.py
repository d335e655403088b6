"""WebSocket consumers: viewers join a group and receive the server-rendered rows.

A consumer never queries the database per message: the ``Broadcaster``
renders each change once and every consumer forwards the same HTML.
"""

from __future__ import annotations

from typing import Any

import structlog
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from adminpanel.live.broadcast import GROUP, MESSAGE_TYPE
from adminpanel.observability import viewers
from adminpanel.roles import VIEW

log = structlog.get_logger(__name__)

# 4000-4999 are free for applications; 4401 mirrors HTTP 401.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class SessionsConsumer(AsyncWebsocketConsumer):
    """``/ws/sessions/``: live session rows for logged-in users."""

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
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await viewers.joined(self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)
        await viewers.left(self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Viewers only listen; anything they send is ignored."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, on the
        # one sync thread that ingest also uses: N viewers would queue N hops behind
        # ingest per push. The push handler never touches the database, so skip it.
        if message["type"] == MESSAGE_TYPE:
            await self.sessions_changed(message)
        else:
            await super().dispatch(message)

    async def sessions_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])
