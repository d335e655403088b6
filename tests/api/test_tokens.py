"""API tokens: made by a command and shown once, stored as a digest, revoked, given by the demo."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from adminpanel.api import tokens
from adminpanel.models import ApiToken
from tests.api.support import get
from tests.support.users import make_user

pytestmark = pytest.mark.django_db

TOKEN_SHAPE = re.compile(r"^rb_[A-Za-z0-9_-]{40}$")


def create(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_the_command_prints_a_new_token_once_and_stores_only_its_digest() -> None:
    make_user("operator", role="operator")
    token = create("operator", "--name", "ci")
    assert TOKEN_SHAPE.match(token), token
    row = ApiToken.objects.get()
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:10] and row.name == "ci" and row.user.username == "operator"
    stored = [str(v) for v in ApiToken.objects.values_list(flat=False).get()]
    assert token not in stored


def test_two_tokens_of_one_user_differ() -> None:
    make_user("operator", role="operator")
    assert create("operator") != create("operator")


def test_the_command_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="no user 'ghost'"):
        create("ghost")


def test_a_token_made_by_the_command_reads_the_api() -> None:
    make_user("viewer")
    token = create("viewer")
    assert get(Client(), "/api/v1/gateways", token).status_code == 200


def test_revoke_by_prefix_ends_the_token() -> None:
    make_user("viewer")
    token = create("viewer")
    out = io.StringIO()
    call_command("create_api_token", "--revoke", token[:10], stdout=out)
    assert "Revoked" in out.getvalue()
    response = get(Client(), "/api/v1/gateways", token)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_revoke_refuses_a_prefix_that_matches_two_tokens() -> None:
    user = make_user("viewer")
    for n in range(2):
        ApiToken.objects.create(user=user, digest=tokens.digest(f"token-{n}"), prefix="rb_same123")
    with pytest.raises(CommandError, match="2 live tokens"):
        call_command("create_api_token", "--revoke", "rb_same")


def test_revoke_of_an_unknown_prefix_says_so() -> None:
    with pytest.raises(CommandError, match="no live API token"):
        call_command("create_api_token", "--revoke", "rb_nothing")


def test_the_demo_token_is_given_to_the_operator_the_same_on_every_start() -> None:
    make_user("operator", role="operator")
    token = "rb_demo-token-for-the-operator-0001"
    first = tokens.give_demo_token(token)
    again = tokens.give_demo_token(token)
    assert first is not None and again is not None and first.pk == again.pk
    assert ApiToken.objects.count() == 1
    assert get(Client(), "/api/v1/sessions", token).status_code == 200


def test_no_demo_token_is_made_when_the_setting_is_empty() -> None:
    make_user("operator", role="operator")
    assert tokens.give_demo_token("") is None
    assert not ApiToken.objects.exists()


def test_a_short_demo_token_stops_the_demo_naming_the_variable() -> None:
    make_user("operator", role="operator")
    with pytest.raises(tokens.TokenError, match="RUNBOARD_DEMO_API_TOKEN"):
        tokens.give_demo_token("short")


def test_last_used_is_written_at_most_once_a_minute() -> None:
    make_user("viewer")
    token = create("viewer")
    client = Client()
    get(client, "/api/v1/gateways", token)
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    get(client, "/api/v1/gateways", token)
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    get(client, "/api/v1/gateways", token)
    later = ApiToken.objects.get().last_used_at
    assert later is not None and later > first


def test_an_inactive_users_token_is_refused() -> None:
    make_user("viewer")
    token = create("viewer")
    User.objects.filter(username="viewer").update(is_active=False)
    response = get(Client(), "/api/v1/gateways", token)
    assert response.status_code == 401 and "inactive" in response.json()["error"]
