"""Bearer authentication on /api/v1/ only, and errors that are always JSON."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from adminpanel.models import ApiToken
from tests.api.support import get, post
from tests.support.streams import Stream, ingest, locked_sessions

pytestmark = pytest.mark.django_db

KEY = "agent:main:telegram:direct:0"


def refused(response: object, status: int, says: str) -> dict[str, object]:
    assert response.status_code == status, response.content  # type: ignore[attr-defined]
    assert response["Content-Type"] == "application/json"  # type: ignore[index]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert says in str(body["error"]), body
    assert isinstance(body["details"], dict)
    return body


def test_no_token_is_a_401_that_says_how_to_send_one() -> None:
    response = Client().get("/api/v1/sessions")
    refused(response, 401, "Authorization: Bearer")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_token_is_a_401() -> None:
    refused(get(Client(), "/api/v1/sessions", "rb_" + "x" * 40), 401, "Unknown API token")


def test_another_scheme_is_a_401_naming_it() -> None:
    response = Client().get("/api/v1/sessions", headers={"Authorization": "Basic dXNlcjpwdw=="})
    refused(response, 401, "'Basic'")


def test_a_revoked_token_is_a_401(tokens: dict[str, str]) -> None:
    ApiToken.objects.filter(user__username="viewer").update(revoked_at="2026-01-01T00:00:00Z")
    refused(get(Client(), "/api/v1/sessions", tokens["viewer"]), 401, "revoked")


def test_a_session_cookie_does_not_authenticate_the_api(tokens: dict[str, str]) -> None:
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    assert client.get("/").status_code == 200  # the pages take the cookie
    refused(client.get("/api/v1/sessions"), 401, "No API token")


def test_the_token_decides_who_acts_not_the_session_cookie(tokens: dict[str, str]) -> None:
    ingest(locked_sessions(Stream("gw-a"), 1))
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    body = {"gateway": "gw-a", "session_key": KEY, "reason": "r", "expect_run_id": "old"}
    refused(post(client, "/api/v1/actions/force-clear", tokens["viewer"], body), 403, "viewer")


def test_a_post_needs_no_csrf_token(tokens: dict[str, str]) -> None:
    ingest(locked_sessions(Stream("gw-a"), 1))
    client = Client(enforce_csrf_checks=True)
    body = {"gateway": "gw-a", "session_key": KEY, "reason": "r", "expect_run_id": "old"}
    response = post(client, "/api/v1/actions/force-clear", tokens["operator"], body)
    assert response.status_code == 409, response.content


def test_the_pages_still_need_csrf(tokens: dict[str, str]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.get(username="operator"))
    assert client.post("/act/bulk/force-clear/", {}).status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/sessions"),
        ("delete", "/api/v1/gateways"),
        ("put", "/api/v1/audit"),
        ("get", "/api/v1/actions/force-clear"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(
    method: str, path: str, tokens: dict[str, str]
) -> None:
    response = getattr(Client(), method)(
        path, headers={"Authorization": f"Bearer {tokens['admin']}"}
    )
    body = refused(response, 405, "not allowed")
    assert response["Allow"] in ("GET", "POST")
    assert body["details"] == {"allowed": [response["Allow"]]}


def test_an_unknown_endpoint_is_a_json_404_listing_the_endpoints(tokens: dict[str, str]) -> None:
    refused(get(Client(), "/api/v1/nothing-here", tokens["viewer"]), 404, "GET sessions")


def test_an_unknown_action_is_a_json_404_listing_the_actions(tokens: dict[str, str]) -> None:
    response = post(Client(), "/api/v1/actions/reboot", tokens["operator"], {})
    body = refused(response, 404, "force-clear")
    assert body["details"] == {"actions": ["force-clear", "requeue", "abort", "clear-and-requeue"]}
