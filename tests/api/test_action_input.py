"""A bad action request is a 400 (or 404 for an unknown session) that says what was wrong,
and nothing is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from adminpanel.api.views import MAX_BODY_BYTES
from adminpanel.models import AuditEntry
from tests.api.support import post
from tests.support.streams import Stream, ingest, locked_sessions

pytestmark = pytest.mark.django_db

KEY = "agent:main:telegram:direct:0"
GOOD = {"gateway": "gw-a", "session_key": KEY, "reason": "stuck", "expect_run_id": "run-0"}


@pytest.fixture
def operator(tokens: dict[str, str]) -> str:
    ingest(locked_sessions(Stream("gw-a"), 1))
    return tokens["operator"]


def refused(
    operator: str, body: Any, status: int = 400, headers: dict[str, str] | None = None
) -> str:
    response = post(Client(), "/api/v1/actions/force-clear", operator, body, **(headers or {}))
    assert response.status_code == status, response.content
    assert not AuditEntry.objects.exists()
    assert isinstance(response.json()["details"], dict)
    message: str = response.json()["error"]
    return message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"\xff\xfe", "not UTF-8"),
        ("", "not JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ({**GOOD, "force": True}, "Unknown key(s) 'force'"),
        ({"gateway": "gw-a", "session_key": KEY}, "Missing key(s): reason"),
        ({**GOOD, "reason": 42}, "reason must be a string, not int"),
        ({**GOOD, "session_key": None}, "session_key must be a string, not NoneType"),
        ({**GOOD, "expect_run_id": ["run-0"]}, "expect_run_id must be a string, not list"),
        ({**GOOD, "reason": "   "}, "a reason is required"),
        ({**GOOD, "reason": "x" * 1001}, "the reason is too long"),
        ({**GOOD, "expect_run_id": ""}, "force_clear needs expect_run_id"),
        ({**GOOD, "gateway": ""}, "gateway must not be empty"),
    ],
)
def test_a_bad_body_is_a_400_saying_what_is_wrong(operator: str, body: Any, says: str) -> None:
    assert says in refused(operator, body)


def test_a_body_over_64_kib_is_a_413_refused_unread(operator: str) -> None:
    huge = {**GOOD, "reason": "x" * MAX_BODY_BYTES}
    assert f"at most {MAX_BODY_BYTES}" in refused(operator, huge, 413)


def test_an_unknown_session_is_a_404_naming_it(operator: str) -> None:
    message = refused(operator, {**GOOD, "session_key": "agent:main:x:y:nobody"}, 404)
    assert "'gw-a' has no session 'agent:main:x:y:nobody'" in message


def test_an_unknown_gateway_is_a_404(operator: str) -> None:
    assert "'gw-z' has no session" in refused(operator, {**GOOD, "gateway": "gw-z"}, 404)


def test_requeue_needs_no_run_id_and_null_means_none(operator: str) -> None:
    response = post(Client(), "/api/v1/actions/requeue", operator, {**GOOD, "expect_run_id": None})
    assert response.status_code == 200, response.content
    assert response.json()["result"] == "noop"  # nothing was lost: nothing to requeue


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-Request-ID", "x" * 65), ("X-Request-ID", "has space"), ("Idempotency-Key", "k" * 201)],
)
def test_a_bad_request_id_or_idempotency_key_header_is_a_400(
    operator: str, header: str, value: str
) -> None:
    assert header in refused(operator, GOOD, headers={header: value})


def test_a_generated_request_id_is_returned_and_recorded(operator: str) -> None:
    stale = {**GOOD, "expect_run_id": "old"}
    response = post(Client(), "/api/v1/actions/abort", operator, stale)
    assert response.status_code == 409
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32 and response.json()["request_id"] == request_id
    assert AuditEntry.objects.get(kind="intent").request_id == request_id


def test_an_idempotency_key_repeats_one_users_same_action_only(
    operator: str, tokens: dict[str, str]
) -> None:
    stale = {**GOOD, "expect_run_id": "old"}
    key = {"Idempotency-Key": "ticket-1"}

    def attempt(slug: str, token: str) -> dict[str, Any]:
        response = post(Client(), f"/api/v1/actions/{slug}", token, stale, **key)
        assert response.status_code == 409, response.content
        answer: dict[str, Any] = response.json()
        return answer

    first = attempt("abort", operator)
    again = attempt("abort", operator)
    other_action = attempt("force-clear", operator)
    other_user = attempt("abort", tokens["admin"])
    assert again["audit_id"] == first["audit_id"] and again["repeated"]
    assert len({first["audit_id"], other_action["audit_id"], other_user["audit_id"]}) == 3
    assert AuditEntry.objects.filter(kind="intent").count() == 3
