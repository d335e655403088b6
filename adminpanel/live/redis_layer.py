"""Channels' Redis layer, able to say whether a group has members (``layers.GroupAware``).

A deployment with several processes shares its groups through Redis
(``RUNBOARD_REDIS_URL``). Needs ``channels_redis``, which only such a
deployment installs: nothing imports this module unless the settings name it.
"""

from __future__ import annotations

import time

try:
    from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "adminpanel.live.redis_layer needs the channels_redis package "
        "(pip install channels-redis), as RUNBOARD_REDIS_URL is set"
    ) from exc


class RedisChannelLayer(ChannelsRedisLayer):
    """``channels_redis``' layer plus ``group_has_members``."""

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
