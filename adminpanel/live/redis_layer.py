"""Channels' Redis layer, able to say whether a group has members (``layers.GroupAware``).

A deployment with several processes shares its groups through Redis
(``RUNBOARD_REDIS_URL``). Needs ``channels_redis``, which only such a
deployment installs: nothing imports this module unless the settings name it.
"""

from __future__ import annotations

import time
from typing import Any

try:
    from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
    from channels_redis.utils import decode_hosts
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "adminpanel.live.redis_layer needs the channels_redis package "
        "(pip install channels-redis), as RUNBOARD_REDIS_URL is set"
    ) from exc


# A receive blocks on the server for channels-redis' ``brpop_timeout`` (5 s) and
# then asks again; the client's socket must wait longer than that, or a channel
# quiet for 5 s raises TimeoutError (redis-py 6+ defaults ``socket_timeout`` to
# 5 s): a viewer's socket then closes with 1011, a bridge's command listener fails
# every few seconds. A Redis that is down is still seen at once (refused connects).
SOCKET_TIMEOUT_S = 15.0


def with_socket_timeout(hosts: list[Any] | None) -> list[dict[str, Any]]:
    """``hosts`` decoded as channels-redis does, each given ``SOCKET_TIMEOUT_S`` unless set."""
    return [{"socket_timeout": SOCKET_TIMEOUT_S, **entry} for entry in decode_hosts(hosts)]


class RedisChannelLayer(ChannelsRedisLayer):
    """``channels_redis``' layer plus ``group_has_members``, with a socket timeout
    longer than its blocking receive."""

    def __init__(self, hosts: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(hosts=with_socket_timeout(hosts), **kwargs)

    async def group_has_members(self, group: str) -> bool:
        """Whether the group's sorted set holds a member that has not expired.

        Members are scored by when they joined; ``group_send`` drops those
        older than ``group_expiry``, so they are not counted here either.
        """
        self.require_valid_group_name(group)
        connection = self.connection(self.consistent_hash(group))
        joined_after = int(time.time()) - self.group_expiry
        count = await connection.zcount(self._group_key(group), f"({joined_after}", "+inf")
        return bool(count)
