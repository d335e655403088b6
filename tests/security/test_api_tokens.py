"""API tokens may expire, are listed and revoked in the admin, and stay revoked when the demo
starts again; a bad Authorization header is never echoed; an oversized body is a 413."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone
from structlog.testing import capture_logs

from adminpanel.api import tokens
from adminpanel.models import ApiToken
from tests.api.support import get, post
from tests.support.users import make_user

pytestmark = pytest.mark.django_db

DEMO_TOKEN = "rb_demo-token-for-the-operator-0001"


def create(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_a_token_made_to_expire_works_until_then_and_says_when() -> None:
    make_user("viewer")
    token, said = create("viewer", "--expires-in-days", "7")
    row = ApiToken.objects.get()
    assert row.expires_at is not None
    assert timedelta(days=6, hours=23) < row.expires_at - timezone.now() <= timedelta(days=7)
    assert "valid until" in said
    assert get(Client(), "/api/v1/gateways", token).status_code == 200


def test_an_expired_token_is_refused_saying_it_expired() -> None:
    make_user("viewer")
    token, _ = create("viewer", "--expires-in-days", "1")
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = get(Client(), "/api/v1/gateways", token)
    assert response.status_code == 401
    assert "expired" in response.json()["error"]


def test_a_token_without_expiry_has_none() -> None:
    make_user("viewer")
    create("viewer")
    assert ApiToken.objects.get().expires_at is None


@pytest.mark.parametrize("days", ["0", "-3", "5000"])
def test_an_expiry_out_of_range_is_refused(days: str) -> None:
    make_user("viewer")
    with pytest.raises(CommandError, match="--expires-in-days"):
        create("viewer", "--expires-in-days", days)


@pytest.fixture
def admin_client() -> Client:
    User.objects.create_superuser("root", password="pw-root-1")
    client = Client()
    assert client.login(username="root", password="pw-root-1")
    return client


def test_the_admin_lists_tokens_without_their_digest(admin_client: Client) -> None:
    viewer = make_user("viewer")
    row, _token = tokens.create_token(viewer, "ci")
    page = admin_client.get("/admin/adminpanel/apitoken/").content.decode()
    assert row.prefix in page and "ci" in page
    assert row.digest not in page
    change = admin_client.get(f"/admin/adminpanel/apitoken/{row.pk}/change/").content.decode()
    assert row.digest not in change


def test_an_admin_revokes_tokens_with_the_admin_action(admin_client: Client) -> None:
    viewer = make_user("viewer")
    row, token = tokens.create_token(viewer, "ci")
    response = admin_client.post(
        "/admin/adminpanel/apitoken/",
        {"action": "revoke", "_selected_action": [row.pk]},
        follow=True,
    )
    assert "Revoked 1 API token" in response.content.decode()
    assert ApiToken.objects.get().revoked_at is not None
    refused = get(Client(), "/api/v1/gateways", token)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]


def test_tokens_cannot_be_added_or_deleted_in_the_admin(admin_client: Client) -> None:
    assert admin_client.get("/admin/adminpanel/apitoken/add/").status_code == 403


def test_the_demo_does_not_undo_a_revocation_of_its_token() -> None:
    make_user("operator", role="operator")
    tokens.give_demo_token(DEMO_TOKEN)
    tokens.revoke(DEMO_TOKEN[:10])
    with capture_logs() as logs:
        again = tokens.give_demo_token(DEMO_TOKEN)
    assert again is not None and again.revoked_at is not None
    assert ApiToken.objects.get().revoked_at is not None
    assert any(e["event"] == "api_token_kept_revoked" and e["log_level"] == "warning"
               for e in logs)  # fmt: skip
    assert get(Client(), "/api/v1/gateways", DEMO_TOKEN).status_code == 401


def test_demo_users_does_not_reset_the_password_of_a_user_it_did_not_make() -> None:
    User.objects.create_user("admin", password="the-real-admin-password")
    call_command("demo_users", stdout=io.StringIO())
    admin = User.objects.get(username="admin")
    assert admin.check_password("the-real-admin-password")
    assert not admin.groups.filter(name="runboard_demo").exists()
    assert User.objects.get(username="viewer").check_password("runboard")


def test_demo_users_resets_the_users_it_made() -> None:
    call_command("demo_users", stdout=io.StringIO())
    operator = User.objects.get(username="operator")
    operator.set_password("changed-by-someone")
    operator.save()
    call_command("demo_users", stdout=io.StringIO())
    assert User.objects.get(username="operator").check_password("runboard")


@pytest.mark.parametrize(
    "header",
    ["rb_secret-token-sent-without-bearer-0001", "rb_secret Token-in-two-parts-0001", "Bearer"],
)
def test_a_bad_authorization_header_is_not_echoed_in_the_answer_or_the_log(
    header: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        response = Client().get("/api/v1/sessions", headers={"Authorization": header})
    assert response.status_code == 401
    secret = header.split()[0][3:12] if header != "Bearer" else "Bearer"
    if header != "Bearer":
        assert secret not in response.content.decode()
        assert secret not in str(logs) and secret not in caplog.text
    assert "Bearer <token>" in response.json()["error"]


def test_a_known_other_scheme_is_still_named() -> None:
    response = Client().get("/api/v1/sessions", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert "'Basic'" in response.json()["error"]
    assert "dXNlcjpwdw" not in response.content.decode()


def test_an_oversized_body_is_a_413_in_json() -> None:
    make_user("operator", role="operator")
    token, _ = create("operator")
    response = post(Client(), "/api/v1/actions/force-clear", token, "x" * 3_000_000)
    assert response.status_code == 413
    assert "at most" in response.json()["error"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_a_body_past_djangos_own_limit_is_a_413_in_json_not_a_500() -> None:
    make_user("operator", role="operator")
    token, _ = create("operator")
    body = '{"gateway": "gw", "session_key": "k", "reason": "' + "x" * 200 + '"}'
    response = post(Client(), "/api/v1/actions/force-clear", token, body)
    assert response.status_code == 413, response.content
    assert "too large" in response.json()["error"]
