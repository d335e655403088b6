"""Shared by the action tests: a mirrored simulated gateway and users in each role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User

from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget
from adminpanel.ingest import Ingestor
from adminpanel.models import Session
from adminpanel.roles import ROLES, ensure_roles
from gateway_bridge.scopes import DEFAULT_SCOPES
from simgateway.server import SimGateway

HUNG = "agent:main:telegram:direct:hung"


@contextlib.asynccontextmanager
async def mirrored(
    gw: SimGateway,
    name: str = "sim",
    *,
    ingestor: Ingestor | None = None,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
) -> AsyncIterator[BridgeSupervisor]:
    """The bridge for ``gw`` running in this test's loop, writing into the test database;
    it asks the gateway for ``scopes`` (the gateway's access level)."""
    target = GatewayTarget(name, gw.url, gw.token, scopes)
    supervisor = BridgeSupervisor([target], ingestor=ingestor)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        yield supervisor
    finally:
        stop.set()
        await task


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll until ``check`` holds; the timeout is a generous upper bound only."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - the store announces nothing to await
            await asyncio.sleep(0.05)


@sync_to_async
def held_by(key: str) -> str:
    session = Session.objects.filter(session_key=key).first()
    return session.run_id if session is not None and session.locked else ""


async def hung_run(gw: SimGateway, key: str = HUNG) -> str:
    """Make ``key``'s turn hang and wait until the store shows its lock; its run id."""
    gw.send_inbound(key, "please HANG now")

    async def locked() -> bool:
        return bool(await held_by(key))

    await eventually(locked)
    return await held_by(key)


def role_users() -> dict[str, User]:
    """One user per role, plus ``nobody`` (logged in, in no group)."""
    ensure_roles()
    users = {}
    for role in ROLES:
        user = User.objects.create_user(role, password="pw")
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    users["nobody"] = User.objects.create_user("nobody", password="pw")
    return users
