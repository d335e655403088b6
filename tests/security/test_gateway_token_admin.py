"""The gateway token in the admin is write-only, and a changed URL needs it entered again,
so a gateway moved to another address never receives the old token."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from adminpanel.models import Gateway

pytestmark = pytest.mark.django_db

SECRET = "gw-token-that-must-never-be-shown-0001"


@pytest.fixture
def admin_client() -> Client:
    User.objects.create_superuser("root", password="pw-root-1")
    client = Client()
    assert client.login(username="root", password="pw-root-1")
    return client


@pytest.fixture
def gateway() -> Gateway:
    return Gateway.objects.create(name="prod-eu", url="ws://10.0.0.1:18789", token=SECRET)


def change(client: Client, gateway: Gateway, **fields: str) -> object:
    data = {"name": gateway.name, "url": gateway.url, "token": "", "enabled": "on",
            "access": gateway.access, **fields}  # fmt: skip
    return client.post(f"/admin/adminpanel/gateway/{gateway.pk}/change/", data)


def test_the_change_form_never_shows_the_stored_token(
    admin_client: Client, gateway: Gateway
) -> None:
    page = admin_client.get(f"/admin/adminpanel/gateway/{gateway.pk}/change/").content.decode()
    assert SECRET not in page
    assert 'type="password"' in page
    assert "set (hidden)" in page


def test_a_blank_token_keeps_the_stored_one(admin_client: Client, gateway: Gateway) -> None:
    response = change(admin_client, gateway, enabled="")
    assert response.status_code == 302  # type: ignore[attr-defined]
    gateway.refresh_from_db()
    assert (gateway.token, gateway.enabled) == (SECRET, False)


def test_a_new_token_replaces_the_stored_one(admin_client: Client, gateway: Gateway) -> None:
    change(admin_client, gateway, token="a-new-token-0002")
    gateway.refresh_from_db()
    assert gateway.token == "a-new-token-0002"


def test_changing_the_url_without_the_token_is_refused(
    admin_client: Client, gateway: Gateway
) -> None:
    response = change(admin_client, gateway, url="ws://attacker.example:18789")
    assert response.status_code == 200  # type: ignore[attr-defined]
    page = response.content.decode()  # type: ignore[attr-defined]
    assert "The URL changed: enter the token again" in page
    assert SECRET not in page
    gateway.refresh_from_db()
    assert gateway.url == "ws://10.0.0.1:18789"


def test_changing_the_url_with_the_token_entered_again_saves_both(
    admin_client: Client, gateway: Gateway
) -> None:
    change(admin_client, gateway, url="ws://10.0.0.2:18789", token="token-for-the-new-0003")
    gateway.refresh_from_db()
    assert (gateway.url, gateway.token) == ("ws://10.0.0.2:18789", "token-for-the-new-0003")


def test_changing_the_url_and_removing_the_token_saves_no_token(
    admin_client: Client, gateway: Gateway
) -> None:
    change(admin_client, gateway, url="ws://10.0.0.2:18789", clear_token="on")
    gateway.refresh_from_db()
    assert (gateway.url, gateway.token) == ("ws://10.0.0.2:18789", "")


def test_a_gateway_without_a_token_may_move_freely(admin_client: Client) -> None:
    gateway = Gateway.objects.create(name="lab", url="ws://127.0.0.1:1")
    change(admin_client, gateway, url="ws://127.0.0.1:2")
    gateway.refresh_from_db()
    assert gateway.url == "ws://127.0.0.1:2"
