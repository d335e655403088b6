"""The live socket opens only from the page's own origin (scheme, host and port), and
closes once its login session ends."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.models import Session as LoginSession
from django.test import Client, override_settings

from adminpanel.live.consumers import CLOSE_LOGGED_OUT
from adminpanel.security import allowed_origin
from runboard.asgi import application
from tests.support.users import make_user

PATH = "/ws/sessions/"

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def logged_in() -> tuple[Client, bytes]:
    make_user("viewer", "pw-viewer-1")
    client = Client()
    assert client.login(username="viewer", password="pw-viewer-1")
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return client, f"{settings.SESSION_COOKIE_NAME}={value}".encode()


async def opens(origin: bytes, host: bytes, scheme: str = "ws") -> tuple[bool, int | None]:
    _client, cookie = await logged_in()
    headers = [(b"origin", origin), (b"host", host), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    communicator.scope["scheme"] = scheme
    try:
        connected, code = await communicator.connect(timeout=10)
        return connected, code
    finally:
        await communicator.disconnect()


async def test_the_pages_own_origin_opens_the_socket() -> None:
    assert (await opens(b"http://localhost:8000", b"localhost:8000"))[0]


async def test_an_origin_on_another_port_of_the_same_host_is_refused() -> None:
    assert not (await opens(b"http://localhost:9999", b"localhost:8000"))[0]


async def test_an_origin_with_another_scheme_is_refused() -> None:
    assert not (await opens(b"https://localhost:8000", b"localhost:8000"))[0]


async def test_a_missing_origin_is_refused() -> None:
    _client, cookie = await logged_in()
    headers = [(b"host", b"localhost:8000"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    try:
        assert not (await communicator.connect(timeout=10))[0]
    finally:
        await communicator.disconnect()


def test_the_default_port_matches_an_origin_without_one() -> None:
    assert allowed_origin("http://localhost", "localhost:80", "ws")
    assert allowed_origin("https://localhost", "localhost", "wss")
    assert not allowed_origin("http://localhost", "localhost:8000", "ws")


def test_a_host_outside_allowed_hosts_is_refused_even_when_the_origin_matches_it() -> None:
    assert not allowed_origin("http://evil.example", "evil.example", "ws")


@override_settings(HTTPS=True)
def test_behind_an_https_proxy_only_the_https_origin_is_the_pages_own() -> None:
    assert allowed_origin("https://localhost", "localhost", "ws")
    assert not allowed_origin("http://localhost", "localhost", "ws")


@override_settings(CSRF_TRUSTED_ORIGINS=["https://console.example.com"])
def test_a_trusted_origin_may_open_a_socket_on_another_host_name() -> None:
    assert allowed_origin("https://console.example.com", "localhost:8000", "ws")
    assert not allowed_origin("https://console.example.com:8443", "localhost:8000", "ws")


def test_an_origin_that_is_not_a_url_is_refused() -> None:
    for origin in ("null", "", "localhost:8000", "ftp://localhost:8000", "http://[::1"):
        assert not allowed_origin(origin, "localhost:8000", "ws")


@override_settings(RUNBOARD_LIVE_SESSION_CHECK_S=0.05)
async def test_logging_out_closes_an_open_socket_with_the_logged_out_code() -> None:
    client, cookie = await logged_in()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        await sync_to_async(client.post)("/logout/")
        closed = await communicator.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": CLOSE_LOGGED_OUT}
    finally:
        await communicator.disconnect()


@override_settings(RUNBOARD_LIVE_SESSION_CHECK_S=0.05)
async def test_an_expired_login_session_closes_the_socket_too() -> None:
    _client, cookie = await logged_in()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    try:
        assert (await communicator.connect(timeout=10))[0]
        await sync_to_async(LoginSession.objects.update)(expire_date="2000-01-01T00:00:00Z")
        closed = await communicator.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": CLOSE_LOGGED_OUT}
    finally:
        await communicator.disconnect()


@override_settings(RUNBOARD_LIVE_SESSION_CHECK_S=0.05)
async def test_a_socket_whose_session_lives_stays_open() -> None:
    _client, cookie = await logged_in()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    try:
        assert (await communicator.connect(timeout=10))[0]
        assert await communicator.receive_nothing(timeout=0.5)  # about ten checks
    finally:
        await communicator.disconnect()
