"""The admin: gateways are rows an admin edits; mirrored state is shown, never saved."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from adminpanel.models import Gateway, Session


@pytest.fixture
def admin_client(db: None) -> Client:
    User.objects.create_superuser("root", password="pw-root-1")
    client = Client()
    client.login(username="root", password="pw-root-1")
    return client


def test_an_admin_adds_a_gateway_with_its_url_and_token(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/adminpanel/gateway/add/",
        {
            "name": "prod-eu",
            "url": "ws://127.0.0.1:18789",
            "token": "t0k",
            "enabled": "on",
            "access": "act",
        },
    )
    assert response.status_code == 302
    gateway = Gateway.objects.get(name="prod-eu")
    assert (gateway.url, gateway.token, gateway.enabled) == ("ws://127.0.0.1:18789", "t0k", True)
    assert gateway.access == "act"


def test_mirrored_sessions_are_visible_but_read_only_in_the_admin(admin_client: Client) -> None:
    gateway = Gateway.objects.create(name="gw")
    session = Session.objects.create(gateway=gateway, session_key="agent:main:main")
    assert admin_client.get("/admin/adminpanel/session/").status_code == 200
    change = f"/admin/adminpanel/session/{session.pk}/change/"
    response = admin_client.post(change, {"session_key": "tampered"})
    assert response.status_code == 403
    assert admin_client.get("/admin/adminpanel/session/add/").status_code == 403
    session.refresh_from_db()
    assert session.session_key == "agent:main:main"
