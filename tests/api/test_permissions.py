"""The API's permission matrix: anonymous, no role, viewer, operator, admin, against every endpoint.

The same roles as the pages (adminpanel/roles.py). Actions are posted against a
run that no longer holds the lock, so the store answers ``conflict`` (409) at
once without a gateway: what is checked here is who may ask.
"""

from __future__ import annotations

import pytest
from django.test import Client

from adminpanel.models import AuditEntry
from adminpanel.roles import ACTION_PERMISSION, VIEW
from tests.api.support import ACTION_SLUGS, ROLES, get, post
from tests.support.streams import Stream, ingest, locked_sessions

pytestmark = pytest.mark.django_db

READS = ("/api/v1/sessions", "/api/v1/gateways", "/api/v1/audit")
# What each role gets: 401 without a token, 403 without the permission.
READ_STATUS = {"anonymous": 401, "nobody": 403, "viewer": 200, "operator": 200, "admin": 200}
# Acting is the operator's; 409: allowed, and the stale run made it a conflict.
ACT_STATUS = {"anonymous": 401, "nobody": 403, "viewer": 403, "operator": 409, "admin": 409}
KEY = "agent:main:telegram:direct:0"


@pytest.fixture(autouse=True)
def _one_locked_session() -> None:
    ingest(locked_sessions(Stream("gw-a"), 1))


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("role", ROLES)
def test_every_read_needs_a_token_and_the_viewer_role(
    role: str, path: str, tokens: dict[str, str]
) -> None:
    response = get(Client(), path, tokens.get(role))
    assert response.status_code == READ_STATUS[role], response.content
    assert response["Content-Type"] == "application/json"
    if role == "nobody":
        assert VIEW in response.json()["details"]["missing"]
        assert VIEW in response.json()["error"]


@pytest.mark.parametrize("slug", ACTION_SLUGS)
@pytest.mark.parametrize("role", ROLES)
def test_each_action_needs_its_own_permission(role: str, slug: str, tokens: dict[str, str]) -> None:
    body = {"gateway": "gw-a", "session_key": KEY, "reason": "matrix", "expect_run_id": "old"}
    response = post(Client(), f"/api/v1/actions/{slug}", tokens.get(role), body)
    assert response.status_code == ACT_STATUS[role], response.content
    permission = ACTION_PERMISSION[slug.replace("-", "_")]
    if response.status_code == 403:
        assert response.json()["details"]["missing"] == [permission]
        assert permission in response.json()["error"]
    attempts = AuditEntry.objects.filter(kind="intent").count()
    assert attempts == (1 if response.status_code == 409 else 0)
    if response.status_code == 409:
        assert response.json()["result"] == "conflict"
        assert AuditEntry.objects.get(kind="intent").actor == role
