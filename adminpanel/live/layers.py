"""What Runboard asks of a channel layer beyond Channels' own API.

The broadcaster renders nothing while nobody watches, so it asks the layer
whether the viewers' group has members. Every layer Runboard supports
answers (the in-process layer, the hub's client layer, the Redis layer); a
layer that cannot is taken to have members. The bridges' supervisor asks
whether the layer lives in this process only, and then serves it to the
bridge process through a ``ChannelHub``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeGuard, runtime_checkable

if TYPE_CHECKING:
    from adminpanel.live.memory_layer import InProcessChannelLayer


@runtime_checkable
class GroupAware(Protocol):
    """A layer that knows whether a group has members."""

    async def group_has_members(self, group: str) -> bool:
        """False only when the layer knows ``group`` is empty."""
        ...


async def group_has_members(layer: object, group: str) -> bool:
    """Whether ``group`` may have members: True unless ``layer`` knows it is empty."""
    if isinstance(layer, GroupAware):
        return await layer.group_has_members(group)
    return True


def in_this_process(layer: object) -> TypeGuard[InProcessChannelLayer]:
    """Whether ``layer``'s channels and groups live in this process only.

    Another process then reaches them only through a ``ChannelHub``; a layer
    over a shared server (Redis) is reached by every process directly.
    """
    return getattr(layer, "in_this_process", False) is True
