"""The permission matrix: anonymous, no role, viewer, operator, admin, against every page,
every action and the live socket. (The JSON API has its own matrix in tests/api.)

Actions are posted against a run that no longer holds the lock, so the store
answers ``conflict`` at once without a gateway: what is checked here is who
may ask, not what the gateway does (tests/actions covers that).
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from adminpanel.live.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from adminpanel.models import Session
from runboard.asgi import application
from tests.actions.support import role_users
from tests.support.streams import Stream, ingest, locked_sessions

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ("anonymous", "nobody", "viewer", "operator", "admin")
PAGES = ("/", "/stuck/", "/sessions/{pk}/", "/warnings/", "/gateways/", "/audit/")
ACTION_SLUGS = ("force-clear", "requeue", "abort", "clear-and-requeue")
# What each role gets: a page, the login redirect, or 403.
SEES = {"anonymous": 302, "nobody": 403, "viewer": 200, "operator": 200, "admin": 200}
ACTS = {"anonymous": 302, "nobody": 403, "viewer": 403, "operator": 200, "admin": 200}


@pytest.fixture
def users() -> dict[str, User]:
    found = role_users()
    found["admin"].is_staff = True  # the admin role edits settings in Django's admin
    found["admin"].save()
    return found


@pytest.fixture
def session_pk(transactional_db: None) -> int:
    ingest(locked_sessions(Stream("gw-a"), 1))
    return Session.objects.get().pk


def client_as(role: str, users: dict[str, User], cls: type[Client] = Client) -> Client:
    client = cls()
    if role != "anonymous":
        client.force_login(users[role])
    return client


@pytest.mark.parametrize("role", ROLES)
def test_every_page_needs_the_viewer_role(
    role: str, users: dict[str, User], session_pk: int
) -> None:
    client = client_as(role, users)
    for page in PAGES:
        answer = client.get(page.format(pk=session_pk))
        assert answer.status_code == SEES[role], (role, page)
        if answer.status_code == 302:
            assert answer["Location"].startswith("/login/")


@pytest.mark.parametrize("role", ROLES)
def test_only_operators_and_admins_open_an_action_or_bulk_dialog(
    role: str, users: dict[str, User], session_pk: int
) -> None:
    client = client_as(role, users)
    for slug in ACTION_SLUGS:
        assert client.get(f"/sessions/{session_pk}/act/{slug}/").status_code == ACTS[role], slug
        assert client.get(f"/act/bulk/{slug}/").status_code == ACTS[role], slug


@pytest.mark.parametrize("role", ROLES)
async def test_only_operators_and_admins_perform_an_action(
    role: str, users: dict[str, User], session_pk: int
) -> None:
    client = AsyncClient()
    if role != "anonymous":
        await client.aforce_login(users[role])
    for slug in ACTION_SLUGS:
        form = {"reason": "matrix", "expect_run_id": "a-run-long-gone",
                "submission": str(uuid.uuid4())}  # fmt: skip
        answer = await client.post(f"/sessions/{session_pk}/act/{slug}/", form)
        assert answer.status_code == ACTS[role], slug
        if ACTS[role] == 200:
            assert "conflict" in answer.content.decode()


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_reach_the_settings(role: str, users: dict[str, User]) -> None:
    client = client_as(role, users)
    answer = client.get("/admin/adminpanel/recoverypolicy/")
    if role == "admin":
        assert answer.status_code == 200
    else:
        assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


@sync_to_async
def cookie_of(role: str, users: dict[str, User]) -> bytes:
    client = client_as(role, users)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={value}".encode()


@pytest.mark.parametrize("role", ROLES)
async def test_the_live_socket_needs_the_viewer_role(role: str, users: dict[str, User]) -> None:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if role != "anonymous":
        headers.append((b"cookie", await cookie_of(role, users)))
    communicator = WebsocketCommunicator(application, "/ws/sessions/", headers=headers)
    try:
        connected, code = await communicator.connect(timeout=10)
        expected = {"anonymous": CLOSE_UNAUTHENTICATED, "nobody": CLOSE_FORBIDDEN}
        if role in expected:
            assert not connected and code == expected[role]
        else:
            assert connected
    finally:
        await communicator.disconnect()
