"""Who is watching: a row per open live-view socket, so every web worker's viewers count.

A worker that dies without closing its sockets leaves its rows behind; they
name the socket (``channel_name``), so they can be told apart and removed.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.utils import timezone

from adminpanel.models import LiveViewer


def joined_sync(channel_name: str) -> None:
    LiveViewer.objects.get_or_create(
        channel_name=channel_name, defaults={"connected_at": timezone.now()}
    )


def left_sync(channel_name: str) -> None:
    LiveViewer.objects.filter(channel_name=channel_name).delete()


def viewer_count() -> int:
    return LiveViewer.objects.count()


joined = database_sync_to_async(joined_sync)
left = database_sync_to_async(left_sync)
